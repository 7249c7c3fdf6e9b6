"""How a stack of 1-D convolutions lays out its activations: plain ``[B, C, T]``, or
channels-last ``[B, C, 1, T]`` 2-D convolutions for inference on the CPU.

oneDNN (PyTorch's CPU convolution) runs a 1-D convolution on ``[B, C, T]`` tensors by
reordering the input into its own blocked layout and back at every call; on a
channels-last 2-D tensor (``[B, C, 1, T]`` stored time-major, ``C`` innermost) it works in
place. For the narrow, long activations of a vocoder's last stages that is 1.2-2.3x per
convolution on an AVX-512 CPU (32 channels x 220,500 samples, kernel 3: 7.8 ms against
3.4 ms; 128 channels, kernel 11: 53 ms against 45 ms), with the same sums to float32
rounding (a different blocking, ~1e-6 relative).

A model written against a layout (``layout.conv(module, x)`` instead of ``module(x)``,
``layout.enter`` / ``layout.leave`` around the stack) runs either way: :data:`PLAIN` calls
the modules as they are (training, autograd, GPUs), :class:`ChannelsLast` runs the same
modules' weights as channels-last 2-D convolutions. Elementwise operations (activations,
sums) keep the channels-last layout of their inputs, so they need no change.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F
from torch import nn

from wavegen.nn.weight_norm import has_weight_norm
from wavegen.utils.tensor_key import tensors_key


class PlainLayout:
    """``[B, C, T]`` activations; every module is called as it is."""

    #: Whether a model may activate and sum in place (no autograd to keep tensors for).
    inplace = False

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def leave(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def conv(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return module(x)


PLAIN = PlainLayout()


class ChannelsLast(PlainLayout):
    """``[B, C, 1, T]`` channels-last activations; ``nn.Conv1d`` and ``nn.ConvTranspose1d``
    modules (plain weights: fold weight norm first) run as 2-D convolutions, and models
    may activate and sum in place (``inplace``: inference, nothing kept for a backward).

    Each module's weight is converted once (``[out, in, 1, k]``, channels-last) and cached
    until one of its parameters changes (in place or replaced). Inference only: the cached
    copy carries no gradient back to the module.
    """

    inplace = True

    def __init__(self):
        self._weights: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()

    def enter(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, T] -> [B, C, 1, T]`` channels-last (one copy)."""
        return x.unsqueeze(2).contiguous(memory_format=torch.channels_last)

    def leave(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, C, 1, T] -> [B, C, T]`` contiguous."""
        return x.squeeze(2).contiguous()

    def _weight(self, module: nn.Module) -> torch.Tensor:
        weight = module.weight
        key = tensors_key([weight])
        cached = self._weights.get(module)
        if cached is None or cached[0] != key:
            converted = weight.detach().unsqueeze(2).contiguous(memory_format=torch.channels_last)
            cached = (key, converted)
            self._weights[module] = cached
        return cached[1]

    def conv(self, module: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """``module``'s convolution of ``x`` ``[B, C_in, 1, T]``."""
        if not isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            raise TypeError(f"ChannelsLast runs Conv1d and ConvTranspose1d, not "
                            f"{type(module).__name__}")
        weight, bias = self._weight(module), module.bias
        if isinstance(module, nn.ConvTranspose1d):
            return F.conv_transpose2d(x, weight, bias, stride=(1, module.stride[0]),
                                      padding=(0, module.padding[0]),
                                      output_padding=(0, module.output_padding[0]),
                                      groups=module.groups, dilation=(1, module.dilation[0]))
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise ValueError("ChannelsLast runs zero-padded Conv1d with integer padding only")
        return F.conv2d(x, weight, bias, stride=(1, module.stride[0]),
                        padding=(0, module.padding[0]), dilation=(1, module.dilation[0]),
                        groups=module.groups)


def inference_layout(model: nn.Module, x: torch.Tensor, cache: ChannelsLast) -> PlainLayout:
    """``cache`` (channels-last) when ``model`` runs inference on the CPU in float32 with
    plain weights (eval mode, no autograd, weight norm folded); :data:`PLAIN` otherwise."""
    if (model.training or torch.is_grad_enabled() or x.device.type != "cpu"
            or x.dtype != torch.float32 or has_weight_norm(model)):
        return PLAIN
    return cache


__all__ = ["ChannelsLast", "PLAIN", "PlainLayout", "inference_layout"]
