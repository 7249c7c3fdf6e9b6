"""wavegen: a PyTorch toolkit for generating raw audio waveforms.

Conventions used throughout the package:

* waveforms are float32 tensors shaped ``[batch, channels, time]`` with values in [-1, 1];
* spectrograms are ``[batch, freq, frames]``;
* sample rates are always passed explicitly, never read from a global.
"""

__version__ = "0.1.0"

from wavegen.errors import WavegenError  # noqa: E402  (re-exported for users)

__all__ = ["WavegenError", "__version__"]
