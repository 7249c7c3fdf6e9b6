"""Invertible flow layers: exact inverses and log-determinants equal to autograd's."""

import pytest
import torch
from torch import nn

from wavegen.errors import UsageError
from wavegen.nn.flows import (AffineCoupling, Invertible1x1Conv, gaussian_nll, squeeze,
                              squeeze_frames, unsqueeze)


def jacobian_log_det(fn, x: torch.Tensor) -> float:
    """log |det d fn(x) / d x| of one example, by autograd on the flattened input."""
    flat = x.reshape(-1).double()

    def f(v):
        return fn(v.reshape(x.shape).float()).reshape(-1).double()

    jac = torch.autograd.functional.jacobian(f, flat)
    return torch.linalg.slogdet(jac)[1].item()


def test_squeeze_layout_and_round_trip():
    audio = torch.arange(24.0).reshape(1, 1, 24)
    z = squeeze(audio, 4)
    assert z.shape == (1, 4, 6)
    assert z[0, :, 1].tolist() == [4.0, 5.0, 6.0, 7.0]  # column n holds samples 4n .. 4n + 3
    assert torch.equal(unsqueeze(z), audio)
    feats = torch.stack([torch.arange(8.0), 100 + torch.arange(8.0)])[None]  # [1, 2, 8]
    sq = squeeze_frames(feats, 4)
    assert sq.shape == (1, 8, 2)
    assert sq[0, :, 1].tolist() == [4.0, 5.0, 6.0, 7.0, 104.0, 105.0, 106.0, 107.0]
    with pytest.raises(UsageError):
        squeeze(torch.zeros(1, 1, 10), 4)


@pytest.mark.parametrize("lu", [False, True])
def test_invertible_conv_inverse_and_log_det(lu):
    torch.manual_seed(0)
    layer = Invertible1x1Conv(6, lu=lu, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():  # move off the initial rotation so |det| != 1
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    z = torch.randn(2, 6, 5)
    out, log_det = layer(z)
    assert torch.allclose(layer.inverse(out), z, atol=1e-5)
    expected = jacobian_log_det(lambda v: layer(v)[0], z[:1])
    assert abs(log_det[0].item() - expected) < 1e-4
    assert abs(log_det[0].item()) > 0.1  # not trivially zero
    assert torch.allclose(layer.inverse_matrix() @ layer.matrix(), torch.eye(6), atol=1e-5)


def test_lu_and_plain_start_from_the_same_rotation():
    plain = Invertible1x1Conv(8, generator=torch.Generator().manual_seed(3))
    lu = Invertible1x1Conv(8, lu=True, generator=torch.Generator().manual_seed(3))
    assert torch.allclose(plain.matrix(), lu.matrix(), atol=1e-5)
    assert torch.linalg.det(plain.matrix()).item() == pytest.approx(1.0, abs=1e-5)
    assert lu.log_abs_det().item() == pytest.approx(0.0, abs=1e-5)


class _Net(nn.Module):
    def __init__(self, cin, cout, cond):
        super().__init__()
        self.a = nn.Conv1d(cin + cond, 16, 3, padding=1)
        self.b = nn.Conv1d(16, cout, 3, padding=1)

    def forward(self, x, cond):
        return self.b(torch.tanh(self.a(torch.cat([x, cond], 1)))) * 0.5


def test_affine_coupling_inverse_and_log_det():
    torch.manual_seed(1)
    layer = AffineCoupling(6, _Net(3, 6, 2))
    x, cond = torch.randn(2, 6, 7), torch.randn(2, 2, 7)
    y, log_det = layer(x, cond)
    assert torch.allclose(layer.inverse(y, cond), x, atol=1e-5)
    assert torch.equal(y[:, :3], x[:, :3])
    expected = jacobian_log_det(lambda v: layer(v, cond[:1])[0], x[:1])
    assert abs(log_det[0].item() - expected) < 1e-4
    assert abs(expected) > 0.1


def test_gaussian_nll_matches_torch_distributions():
    z = torch.randn(3, 4, 5)
    expected = -torch.distributions.Normal(0.0, 0.7).log_prob(z).sum(dim=(1, 2))
    assert torch.allclose(gaussian_nll(z, 0.7), expected, atol=1e-4)
