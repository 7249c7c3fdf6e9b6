"""Importers: load models published by other projects into wavegen's modules.

Each importer reads the other project's files without unpickling code
(``torch.load(weights_only=True)``), maps its parameter names onto wavegen's and returns the
model together with its config and the :class:`~wavegen.audio.features.FeatureConfig` of the
features it expects.
"""

from wavegen.importers.diffwave_official import import_diffwave_official
from wavegen.importers.hifigan_official import import_hifigan_official
from wavegen.importers.melgan_official import import_melgan_official

__all__ = ["import_diffwave_official", "import_hifigan_official", "import_melgan_official"]
