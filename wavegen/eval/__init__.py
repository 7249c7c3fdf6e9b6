"""Evaluation of trained models on held-out data: vocoders against the reference audio."""

from wavegen.eval.vocoders import (Clip, VocoderScore, griffin_lim_vocoder, heldout_clips,
                                   pipeline_vocoder, score_vocoder)

__all__ = ["Clip", "VocoderScore", "griffin_lim_vocoder", "heldout_clips", "pipeline_vocoder",
           "score_vocoder"]
