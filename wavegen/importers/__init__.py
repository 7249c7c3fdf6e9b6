"""Importers: load models published by other projects into wavegen's modules.

Each importer reads the other project's files without running code from them: plain
tensors and containers with ``torch.load(weights_only=True)``, and checkpoints that are
whole pickled modules (WaveGlow's) with a restricted unpickler that turns a short list of
known classes into inert stand-ins and refuses everything else
(:func:`wavegen.importers.common.load_restricted`). It maps the parameter names onto
wavegen's and returns the model together with its config and the
:class:`~wavegen.audio.features.FeatureConfig` of the features it expects.
"""

from wavegen.importers.diffwave_official import import_diffwave_official
from wavegen.importers.hifigan_official import import_hifigan_official
from wavegen.importers.melgan_official import import_melgan_official
from wavegen.importers.waveglow_official import import_waveglow_official

__all__ = ["import_diffwave_official", "import_hifigan_official", "import_melgan_official",
           "import_waveglow_official"]
