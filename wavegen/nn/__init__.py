"""Shared neural-network layers: causal convolutions, upsamplers, quantisers, output heads."""
