"""Evaluation of trained models on held-out data: vocoders against the reference audio."""

from wavegen.eval.score import (OnsetScore, detected_onsets, midi_chroma_correlation,
                                note_onsets, onset_f1, score_file)
from wavegen.eval.vocoders import (Clip, VocoderScore, griffin_lim_vocoder, heldout_clips,
                                   pipeline_vocoder, score_vocoder)

__all__ = ["Clip", "OnsetScore", "VocoderScore", "detected_onsets", "griffin_lim_vocoder",
           "heldout_clips", "midi_chroma_correlation", "note_onsets", "onset_f1",
           "pipeline_vocoder", "score_file", "score_vocoder"]
