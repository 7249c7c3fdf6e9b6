"""The ``reference`` backend: the per-layer PyTorch step of :meth:`WaveNet.step`.

Every other backend is tested against this one: same head parameters to 1e-4 relative and
the same samples from the same uniforms.
"""

from __future__ import annotations

import torch

from wavegen.kernels.base import Backend, Session


class ReferenceSession(Session):
    """:meth:`WaveNet.start` / :meth:`WaveNet.step` plus the reference draw."""

    def __init__(self, model, batch, length, local, global_cond, prompt):
        super().__init__(model, batch, length, local, global_cond, prompt)
        self.state = model.start(batch, length, local, global_cond, prompt=prompt)

    @torch.no_grad()
    def step_params(self, previous: torch.Tensor) -> torch.Tensor:
        self.time += 1
        return self.model.step(previous, self.state).float()

    @torch.no_grad()
    def generate(self, previous, uniforms, temperature):
        from wavegen.sampling.autoregressive import SamplingOptions, _Draw

        draw = _Draw(self.model.head, SamplingOptions(temperature=temperature))
        samples = []
        for t in range(uniforms.shape[1]):
            previous = draw(self.step_params(previous), None, uniforms[:, t], t)[0]
            samples.append(previous)
        return torch.stack(samples, dim=1)


class ReferenceBackend(Backend):
    name = "reference"
    priority = {"cpu": 0, "cuda": 0}
    session_class = ReferenceSession

    def unavailable(self, device):
        return None
