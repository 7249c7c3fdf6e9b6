"""Training objectives: each task says what to optimise and how to validate.

Recipes name a task (``task: diffusion``); the task registry
(:mod:`wavegen.train.tasks.registry`) maps that name to a :class:`TaskSpec`: the recipe
sections it owns, the model kinds it trains, its checks and how it is built. The built-in
tasks are registered here, each declared beside its implementation (``TASK_SPEC``):

=============  ==========================================  ===============================
task           trains                                      recipe sections
=============  ==========================================  ===============================
likelihood     sample-level models, flows (exact NLL)      none
adversarial    feed-forward mel -> waveform generators     ``discriminators``, ``adversarial``
diffusion      noise-driven denoisers                      ``diffusion``
vq             discrete autoencoders                       ``vq``
spectral       spectrogram predictors (MIDI -> mel, mel    ``spectral``
               -> magnitude vocoders)
=============  ==========================================  ===============================
"""

from wavegen.train.tasks import adversarial, diffusion, likelihood, spectral, vq
from wavegen.train.tasks.registry import (TASKS, Section, TaskSpec, get_task, register_task,
                                          section_owners, unregister_task)

for _module in (likelihood, adversarial, diffusion, vq, spectral):
    register_task(_module.TASK_SPEC)
del _module

__all__ = ["TASKS", "Section", "TaskSpec", "get_task", "register_task", "section_owners",
           "unregister_task"]
