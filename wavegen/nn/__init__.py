"""Shared neural-network layers: causal convolutions, gated residual blocks, upsamplers,
quantisers, output heads, and the discriminator protocol with real/fake batching."""
