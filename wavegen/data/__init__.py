"""Datasets: MAESTRO-style corpora (audio + MIDI), audio folders, MIDI features, synthesis."""

#: The longest piece `wavegen prepare --generate` writes (10 hours).
MAX_PIECE_SECONDS = 36000.0
