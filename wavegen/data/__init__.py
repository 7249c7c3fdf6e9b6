"""Datasets: MAESTRO-style corpora (audio + MIDI), audio folders, MIDI features, synthesis."""
