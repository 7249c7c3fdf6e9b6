"""The GAN generators are equivariant to a shift of one frame = ``hop`` samples.

Every layer of the HiFi-GAN and MelGAN generators is a convolution, a transposed
convolution with the stage's stride, or a pointwise non-linearity; there is no noise input
and no notion of absolute time. Away from the edges (further than the receptive field), a
mel shifted by one frame therefore gives audio shifted by exactly ``hop`` samples. Two
consequences are pinned down here:

* chunked vocoding (``wavegen.vocoder``) can cut the mel at any frame and get the samples of
  one pass, given enough overlap;
* a *stationary* mel (the same frame repeated: a held note) gives audio that repeats every
  ``hop`` samples, i.e. contains only harmonics of ``sample_rate / hop`` (62.5 Hz at 16 kHz,
  86.1 Hz at 22.05 kHz). A sustained partial between two of those harmonics cannot be
  produced, however long the model trains. docs/RESULTS.md measures this on the tiny
  HiFi-GAN (97-100% of its output energy on that grid, against 4-36% for the piano it
  learns from), which is why it does not beat Griffin-Lim on held-out sustained piano.
"""

from __future__ import annotations

import pytest
import torch

from wavegen.models.hifigan import HiFiGANConfig, HiFiGANGenerator
from wavegen.models.melgan import MelGANConfig, MelGANGenerator


def _generators():
    torch.manual_seed(0)
    yield "hifigan-v1", HiFiGANGenerator(HiFiGANConfig.preset("v1", upsample_initial_channel=32))
    yield "hifigan-v3", HiFiGANGenerator(HiFiGANConfig.preset("v3", upsample_initial_channel=32))
    yield "melgan", MelGANGenerator(MelGANConfig(ngf=4))


GENERATORS = dict(_generators())
MARGIN = 24  # frames kept clear of each edge: more than every receptive field (<= 13 frames)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_one_frame_shift_moves_the_audio_by_one_hop(name):
    model = GENERATORS[name].eval()
    hop = model.config.hop_length
    mel = torch.randn(1, 80, 2 * MARGIN + 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        audio = model(mel)[0, 0]
        shifted = model(mel[..., 1:])[0, 0]
    interior = slice(MARGIN * hop, (MARGIN + 6) * hop)
    torch.testing.assert_close(shifted[interior], audio[hop:][interior], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_a_stationary_mel_gives_audio_periodic_in_the_hop(name):
    model = GENERATORS[name].eval()
    hop = model.config.hop_length
    frame = torch.randn(1, 80, 1, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        audio = model(frame.expand(1, 80, 2 * MARGIN + 4))[0, 0]
    interior = audio[MARGIN * hop:(MARGIN + 4) * hop].reshape(4, hop)
    assert interior.abs().max() > 1e-4  # not trivially silent
    for k in range(1, 4):
        torch.testing.assert_close(interior[k], interior[0], rtol=1e-4, atol=1e-5)
    # Hence its spectrum holds only multiples of sample_rate / hop: a period-``hop`` signal
    # has zero DFT energy off the bins that are multiples of (window length / hop).
    spectrum = torch.fft.rfft(interior.reshape(-1).double()).abs() ** 2
    on_grid = spectrum[::4].sum()
    assert on_grid / spectrum.sum() > 1 - 1e-6
