#!/usr/bin/env python
"""WaveNet sampling speed: the naive generator, the cached per-layer PyTorch path, and the
``reference`` and ``cpu`` sampling backends.

Reference configuration (the baseline that the fast-kernel backends must beat): 2 stacks x
10 layers, kernel 2, residual 64, gate 128, skip 256, 256-way mu-law softmax, 16 kHz,
local conditioning on an 80-band log-mel (hop 256, transposed-conv upsampler 4x4x4x4).

Both generators start after a prompt one receptive field long, so every naive step really
recomputes 2047 positions, and both draw from the same uniforms. The cached path is
checked against the naive one before the timing. Weights are random: speed does not depend
on them.

The backends are timed through ``wavegen.kernels.open_session(...).generate`` alone (the
session, its priming on the prompt and its weight packing are set up outside the timed
call), so those numbers are about the sampling step, not the driver; the ``e2e`` columns
time the whole ``generate(..., backend=NAME)`` call a user waits for when rendering a mel
with no prompt (session set-up, conditioning upsampling, the loop, the typicality
diagnostic and the waveform). The ``cpu`` backend is
first checked to draw the reference backend's samples on a short run; then reference and
cpu repeats alternate (this kind of shared VM drifts by up to 2x over a minute) and the
median of each is reported, with the ratio cpu / reference.

Usage: python scripts/bench_wavenet_sampling.py [--batches 1 16] [--cached-steps 2000]
       [--naive-steps 20] [--backend-steps 2000] [--reference-steps 500] [--threads 2]
       [--repeats 3] [--skip-driver] [--teacher-forced] [--contention N]
       python scripts/bench_wavenet_sampling.py --plain-loop [--reference-steps 500]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from wavegen import kernels
from wavegen.models.wavenet import WaveNet, WaveNetConfig, describe
from wavegen.sampling import draw_uniforms, generate

SAMPLE_RATE = 16000
HOP = 256


def reference_config() -> WaveNetConfig:
    return WaveNetConfig(layers=10, stacks=2, kernel_size=2, residual_channels=64,
                         gate_channels=128, skip_channels=256, head="categorical",
                         num_classes=256, local_channels=80, hop_length=HOP,
                         upsample_factors=(4, 4, 4, 4), sample_rate=SAMPLE_RATE)


def measure(model: WaveNet, batch: int, steps: int, naive: bool, seed: int = 0):
    """Samples per second (aggregate over the batch) for ``steps`` new samples."""
    # The prompt covers at least one receptive field (full windows from the first step) and
    # pads the total up to whole conditioning frames, so exactly ``steps`` are generated.
    frames = -(-(model.receptive_field + 1 + steps) // HOP)
    total = frames * HOP
    prompt_len = total - steps
    generator = torch.Generator().manual_seed(seed)
    local = torch.randn(batch, 80, frames, generator=generator)
    prompt = torch.rand(batch, 1, prompt_len, generator=generator) * 1.2 - 0.6
    uniforms = draw_uniforms(batch, steps, 1, seed)
    result = generate(model, local=local, prompt=prompt, uniforms=uniforms, naive=naive)
    return result.samples_per_second, result


def backend_inputs(model: WaveNet, batch: int, steps: int, seed: int = 0):
    """Local features, head-target prompt and uniforms as :func:`measure` makes them
    (on the model's device)."""
    device = next(model.parameters()).device
    frames = -(-(model.receptive_field + 1 + steps) // HOP)
    total = frames * HOP
    generator = torch.Generator().manual_seed(seed)
    local = torch.randn(batch, 80, frames, generator=generator).to(device)
    wave = torch.rand(batch, 1, total - steps, generator=generator) * 1.2 - 0.6
    prompt = model.targets_from_waveform(wave.to(device))
    uniforms = draw_uniforms(batch, steps, model.head.num_uniforms, seed, device)
    return total, local, prompt, uniforms


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def backend_samples(model: WaveNet, name: str, batch: int, steps: int, seed: int = 0):
    """(samples, seconds of the generate call) of backend ``name``."""
    device = next(model.parameters()).device
    total, local, prompt, uniforms = backend_inputs(model, batch, steps, seed)
    used, session = kernels.open_session(name, model, batch, total, local, None, prompt)
    assert used == name
    _sync(device)
    start = time.perf_counter()
    samples = session.generate(prompt[:, -1], uniforms, 1.0)
    _sync(device)
    return samples, time.perf_counter() - start


@contextlib.contextmanager
def teacher_forced_diagnostics():
    """The cpu session without its in-step diagnostic: ``generate`` then runs the
    teacher-forced pass after the loop (the A/B of the e2e column)."""
    from wavegen.kernels.cpu import CPUSession

    original = CPUSession.in_step_diagnostics
    CPUSession.in_step_diagnostics = lambda self: None
    try:
        yield
    finally:
        CPUSession.in_step_diagnostics = original


def end_to_end(model: WaveNet, name: str, batch: int, steps: int, seed: int = 0) -> tuple[int, float]:
    """(samples, seconds) of the whole ``generate(..., backend=name)`` call a user waits for
    when rendering a mel (no prompt): session set-up (weight packing is cached per model),
    conditioning upsampling, the loop, the typicality diagnostic and the waveform.
    ``steps`` is rounded up to whole conditioning frames."""
    device = next(model.parameters()).device
    frames = -(-steps // HOP)
    generator = torch.Generator().manual_seed(seed)
    local = torch.randn(batch, 80, frames, generator=generator).to(device)
    uniforms = draw_uniforms(batch, frames * HOP, model.head.num_uniforms, seed, device)
    _sync(device)
    start = time.perf_counter()
    generate(model, local=local, uniforms=uniforms, backend=name)
    _sync(device)
    return frames * HOP, time.perf_counter() - start


class PlainIncrementalWaveNet:
    """A textbook incremental WaveNet sampler in plain PyTorch (written here, in the layout
    of r9y9/wavenet_vocoder's ``incremental_forward``), over a wavegen model's weights: per
    layer a queue of its last ``(k - 1) d + 1`` inputs shifted by ``torch.cat`` every step,
    the dilated conv as one ``F.linear`` over the taps, the layer's slice of the mel
    projection, tanh * sigmoid, residual and skip ``F.linear``; then the output stack, a
    softmax and an inverse-CDF draw. Torch's default thread count."""

    def __init__(self, model: WaveNet):
        c = model.config
        self.k, self.width = c.kernel_size, 2 * c.gate_channels
        self.embed = model.input.weight.detach()
        self.upsampler = model.upsampler
        projection = model.local_projection.weight.detach()[..., 0]
        self.layers = []
        for i, layer in enumerate(model.layers):
            w = layer.conv.weight.detach()  # [2G, R, k]
            self.layers.append((
                layer.conv.dilation[0], w.permute(0, 2, 1).reshape(w.shape[0], -1),
                layer.conv.bias.detach(), projection[i * self.width:(i + 1) * self.width],
                None if layer.residual is None else layer.residual.weight.detach()[..., 0],
                None if layer.residual is None else layer.residual.bias.detach(),
                layer.skip.weight.detach()[..., 0], layer.skip.bias.detach()))
        self.out = [(m.weight.detach()[..., 0], m.bias.detach())
                    for m in (model.output[1], model.output[3])]

    @torch.no_grad()
    def generate(self, local: torch.Tensor, uniforms: torch.Tensor) -> torch.Tensor:
        batch, steps = uniforms.shape[0], uniforms.shape[1]
        c = self.upsampler(local)[..., :steps]  # [B, C, T]
        queues = [torch.zeros(batch, self.embed.shape[1], (self.k - 1) * d + 1)
                  for d, *_ in self.layers]
        x = self.embed[torch.full((batch,), 128)]
        out = torch.empty(batch, steps, dtype=torch.long)
        for t in range(steps):
            skips = 0
            ct = c[:, :, t]
            for i, (d, w, b, p, wr, br, ws, bs) in enumerate(self.layers):
                queues[i] = torch.cat([queues[i][:, :, 1:], x[:, :, None]], 2)
                taps = queues[i][:, :, ::d]  # [B, R, k], oldest first
                h = F.linear(taps.transpose(1, 2).reshape(batch, -1), w, b) + F.linear(ct, p)
                a, g = h.chunk(2, dim=1)
                z = torch.tanh(a) * torch.sigmoid(g)
                if wr is not None:
                    x = x + F.linear(z, wr, br)
                skips = skips + F.linear(z, ws, bs)
            h = F.relu(F.linear(F.relu(skips), *self.out[0]))
            probs = torch.softmax(F.linear(h, *self.out[1]), dim=-1)
            sample = (probs.cumsum(-1) < uniforms[:, t, None]).sum(-1).clamp_max(probs.shape[-1] - 1)
            out[:, t] = sample
            x = self.embed[sample]
        return out


def plain_loop_comparison(model: WaveNet, batches, steps: int, repeats: int) -> None:
    """Samples/s of the plain loop and of the reference backend, alternating; a table."""
    plain = PlainIncrementalWaveNet(model)
    print(f"# the reference backend's loop against a plain per-layer PyTorch loop "
          f"(PlainIncrementalWaveNet), {steps} steps, median of {repeats} alternating runs; "
          f"the reference's set-up (conditioning, prompt priming) is outside its timing, the "
          f"plain loop's upsampling inside")
    print("| batch | plain loop | reference backend | reference / plain |")
    print("| --- | --- | --- | --- |")
    for batch in batches:
        times = {"plain": [], "reference": []}
        for r in range(repeats):
            total, local_r, prompt, uniforms_r = backend_inputs(model, batch, steps, seed=r)
            _, session = kernels.open_session("reference", model, batch, total, local_r, None,
                                              prompt)
            session.state  # the model's set-up (conditioning, priming) outside the timing
            start = time.perf_counter()
            session.generate(prompt[:, -1], uniforms_r, 1.0)
            times["reference"].append(batch * steps / (time.perf_counter() - start))
            frames = -(-steps // HOP)
            local = torch.randn(batch, 80, frames, generator=torch.Generator().manual_seed(r))
            uniforms = draw_uniforms(batch, steps, 1, r)[..., 0]
            start = time.perf_counter()
            plain.generate(local, uniforms)
            times["plain"].append(batch * steps / (time.perf_counter() - start))
        p, ref = statistics.median(times["plain"]), statistics.median(times["reference"])
        print(f"| {batch} | {p:.1f} | {ref:.1f} | {ref / p:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=None,
                        help="batch sizes (default: 1 16 on the CPU, 1 64 on a GPU)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--backends", nargs="+", default=None,
                        help="fast backends to compare with reference (default: every one "
                             "usable on the device)")
    parser.add_argument("--cached-steps", type=int, default=2000)
    parser.add_argument("--naive-steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend-steps", type=int, default=2000,
                        help="samples per timed run of a fast backend")
    parser.add_argument("--reference-steps", type=int, default=500,
                        help="samples per timed run of the reference backend")
    parser.add_argument("--repeats", type=int, default=3,
                        help="alternating timed runs per backend (the median is reported)")
    parser.add_argument("--teacher-forced", action="store_true",
                        help="also time e2e with the typicality diagnostic from a teacher-"
                             "forced pass after the loop (what the cpu backend did before it "
                             "computed it inside the step)")
    parser.add_argument("--contention", type=int, default=0, metavar="N",
                        help="also time the backends with N busy processes competing for "
                             "the cores (scripts/contention.py) and print that table too")
    parser.add_argument("--plain-loop", action="store_true",
                        help="only compare the reference backend with a plain per-layer "
                             "PyTorch loop (PlainIncrementalWaveNet)")
    parser.add_argument("--skip-driver", action="store_true",
                        help="time only the backends (not the naive and cached drivers)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    batches = args.batches or ([1, 64] if device.type == "cuda" else [1, 16])
    torch.manual_seed(0)
    model = WaveNet(reference_config()).eval().to(device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False  # the reference in full float32
        torch.backends.cudnn.allow_tf32 = False
    if args.plain_loop:
        plain_loop_comparison(model, batches, args.reference_steps, args.repeats)
        return
    names = args.backends or [n for n in ("cpu", "cpu-bf16", "cudagraph", "triton", "cuda")
                              if kernels.why_not(n, model) is None]
    for name in names:
        reason = kernels.why_not(name, model)
        if reason is not None:
            raise SystemExit(f"the {name} backend cannot run here: {reason}")

    # Correctness first: the cached path reproduces the naive generator's samples, and
    # every fast backend the reference backend's.
    if not args.skip_driver:
        _, naive = measure(model, 2, 8, naive=True, seed=1)
        _, cached = measure(model, 2, 8, naive=False, seed=1)
        assert torch.equal(naive.samples, cached.samples), "cached and naive samplers disagree"
    expected, _ = backend_samples(model, "reference", 2, 64, seed=1)
    for name in names:
        got, _ = backend_samples(model, name, 2, 64, seed=1)
        agree = float((got.cpu() == expected.cpu()).float().mean())
        print(f"# {name}: {100 * agree:.1f}% of 128 check samples equal to reference")

    rows = time_rows(model, names, batches, args)
    print_table(model, names, rows, args, device, "quiet machine")
    if args.contention:
        from contention import competing_load

        with competing_load(args.contention):
            loaded = time_rows(model, names, batches, args, drivers=False)
        print_table(model, names, loaded, args, device,
                    f"under load: {args.contention} busy process(es) competing")
        for (batch, _, _, quiet), (_, _, _, busy) in zip(rows, loaded):
            print(f"# batch {batch}, loaded / quiet: " + ", ".join(
                f"{name} {busy[name] / quiet[name]:.2f}" for name in busy))


def time_rows(model, names, batches, args, drivers: bool = True):
    """One row per batch: (batch, naive, cached, {column: samples/s})."""
    rows = []
    for batch in batches:
        naive_rate = cached_rate = float("nan")
        if drivers and not args.skip_driver:
            naive_rate, _ = measure(model, batch, args.naive_steps, naive=True)
            cached_rate = statistics.median(
                measure(model, batch, args.cached_steps, naive=False, seed=r)[0]
                for r in range(args.repeats))
        rates = {name: [] for name in ("reference", *names)}
        whole = {name: [] for name in names}
        for r in range(args.repeats):  # alternate, so all see the same drift
            for name in rates:
                steps = args.reference_steps if name == "reference" else args.backend_steps
                _, seconds = backend_samples(model, name, batch, steps, seed=r)
                rates[name].append(batch * steps / seconds)
                if name in whole:
                    made, seconds = end_to_end(model, name, batch, steps, seed=r)
                    whole[name].append(batch * made / seconds)
                if name == "cpu" and args.teacher_forced:
                    with teacher_forced_diagnostics():
                        made, seconds = end_to_end(model, name, batch, steps, seed=r)
                    whole.setdefault("cpu tf", []).append(batch * made / seconds)
        rate = {name: statistics.median(v) for name, v in rates.items()}
        rate.update({f"{name} e2e": statistics.median(v) for name, v in whole.items()})
        rows.append((batch, naive_rate, cached_rate, rate))
    return rows


def print_table(model, names, rows, args, device, title: str) -> None:
    """The Markdown table of :func:`time_rows`' rows, under a header saying what ran."""
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(f"# {title}")
    print(f"# {describe(model.config)}; {model.num_parameters() / 1e6:.2f} M parameters")
    print(f"# {gpu}, {os.cpu_count()} cpus, torch {torch.__version__} "
          f"({args.threads} threads), {time.strftime('%Y-%m-%d')}")
    print("# samples/s, aggregate over the batch; backends: the generate call alone, median "
          f"of {args.repeats} alternating runs ({args.reference_steps} reference steps, "
          f"{args.backend_steps} steps of the others); '-' = not measured")
    print("# e2e: the whole generate(..., backend=NAME) call a user waits for when rendering a "
          "mel, no prompt (set-up, conditioning, loop, typicality diagnostic, waveform)")
    head = f"| {'batch':>5} | {'naive':>9} | {'cached':>9} | {'reference':>9} |"
    for name in names:
        head += (f" {name:>10} | {name + ' / ref':>14} | {'x real time':>11} | "
                 f"{name + ' e2e':>10} | {'e2e x real time':>15} |")
    print(head)
    print("|" + "|".join("-" * (len(c) + 0) for c in head.split("|")[1:-1]) + "|")

    def cell(value: float, width: int) -> str:
        return f"{'-':>{width}}" if value != value else f"{value:{width}.1f}"

    if args.teacher_forced:
        print("# cpu e2e with the diagnostic from a teacher-forced pass after the loop: " +
              ", ".join(f"batch {batch} {rate['cpu tf e2e']:.1f}" for batch, _, _, rate in rows))
    for batch, naive_rate, cached_rate, rate in rows:
        line = (f"| {batch:5d} | {cell(naive_rate, 9)} | {cell(cached_rate, 9)} | "
                f"{rate['reference']:9.1f} |")
        for name in names:
            e2e = rate[f"{name} e2e"]
            line += (f" {rate[name]:10.1f} | {rate[name] / rate['reference']:13.1f}x | "
                     f"{rate[name] / SAMPLE_RATE:10.3f}x | {e2e:10.1f} | "
                     f"{e2e / SAMPLE_RATE:14.3f}x |")
        print(line)


if __name__ == "__main__":
    main()
