"""The ``reference`` backend: the model's own incremental step and the reference draw.

It runs any sample-level model (:class:`~wavegen.models.protocols.SampleLevelModel`) through
its public contract, ``start`` / ``step``, and draws with :class:`~wavegen.sampling.Draw`.
Every other backend is tested against this one: same head parameters to 1e-4 relative and
the same samples from the same uniforms.
"""

from __future__ import annotations

import torch

from wavegen.kernels.base import Backend, Session
from wavegen.sampling.contract import sample_level_reason
from wavegen.sampling.draw import Draw
from wavegen.sampling.options import SamplingOptions
from wavegen.utils.threads import step_threads, torch_threads


class ReferenceSession(Session):
    """``model.start`` / ``model.step`` plus :class:`~wavegen.sampling.Draw`.

    The model's state is built on the first step, so a session ``auto`` opens and the
    driver does not use costs nothing.
    """

    def __init__(self, model, batch, length, local, global_cond, prompt):
        super().__init__(model, batch, length, local, global_cond, prompt)
        self._start_args = (batch, length, local, global_cond, prompt)
        self._state = None

    @property
    def state(self):
        """The model's incremental state (from ``model.start``)."""
        if self._state is None:
            batch, length, local, global_cond, prompt = self._start_args
            self._state = self.model.start(batch, length, local, global_cond, prompt=prompt)
        return self._state

    @torch.no_grad()
    def step_params(self, previous: torch.Tensor) -> torch.Tensor:
        params = self.model.step(previous, self.state).float()
        self.time += 1
        return params

    @torch.no_grad()
    def generate(self, previous, uniforms, temperature):
        draw = Draw(self.model.head, SamplingOptions(temperature=temperature))
        samples = []
        device = next(self.model.parameters()).device
        with torch_threads(step_threads(self.batch, device)):  # see wavegen.utils.threads
            for t in range(uniforms.shape[1]):
                previous = draw.sample(self.step_params(previous), uniforms[:, t])
                samples.append(previous)
        return torch.stack(samples, dim=1)


class ReferenceBackend(Backend):
    name = "reference"
    priority = {"cpu": 0, "cuda": 0}
    session_class = ReferenceSession

    def supports(self, model):
        return sample_level_reason(model)

    def unavailable(self, device):
        return None

    def supports_options(self, options):
        return None
