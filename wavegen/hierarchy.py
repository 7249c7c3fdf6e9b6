"""Hierarchies: a VQ-VAE and its priors, sampled level by level into long music clips.

A hierarchy is a folder holding ``hierarchy.json``, a VQ-VAE bundle and one prior bundle per
level it samples (:mod:`wavegen.models.prior`)::

    HIERARCHY/
      hierarchy.json
      vqvae/          the VQ-VAE bundle (config.json + model.safetensors)
      top/            prior over level 2 (unconditional, or MIDI: conditioning roll)
      up1/            upsampler prior over level 1, conditioned on level 2's codes
      up0/            upsampler prior over level 0, conditioned on level 1's codes

    {"wavegen_hierarchy": 1, "vqvae": "vqvae", "priors": ["top", "up1", "up0"],
     "description": "..."}                                    (description optional)

``priors`` lists the priors top first; each bundle path is relative to the folder, with
``/`` separators, and stays inside it. :func:`load_hierarchy` checks, with one-line
errors, that every prior learned this very VQ-VAE's codes (its ``fingerprint``), that the
levels, hops, codebook sizes and rates agree, that the top prior is unconditional or
MIDI-conditioned, and that each next prior is an upsampler conditioned on the level above
with the right ratio of codes.

Sampling (:meth:`Hierarchy.sample`), top level first:

1. the top prior writes ``N_top = ceil(seconds * rate / hop_top)`` codes (or as many as the
   MIDI file's piano roll has frames, ``--midi``), continuing a prompt's codes
   (``--prompt``: the prompt audio is encoded at every level and each level's prior
   continues its own level's codes of it);
2. every upsampler writes its level's codes under the codes of the level above
   (``ratio`` codes per upper code);
3. the VQ-VAE decodes each sampled level's codes: one waveform per level (the finest level
   sampled is the result; the coarser ones show what each level alone carries).

``stop_level`` stops after that level (``--level``); ``from_codes`` resumes from codes saved
by an earlier run (``--save-codes`` / ``--from-codes``): the levels at and above the lowest
level given are taken as given, and sampling goes on below it. Each level draws its own
uniforms from ``(seed, level)``, so a run stopped and resumed at any level gives the same
codes and audio as one run with the same seed.

Windows. A prior's incremental state holds its per-layer conditioning for the whole length
it is asked for (memory linear in the clip's length: at level 0 of the tiny hierarchy, 10
minutes would need ~10 GB). With ``window=W`` a level is sampled ``W`` codes at a time: each
window re-reads the last ``overlap`` codes already written as its prompt (teacher-forced)
and continues them, with its slice of the conditioning. Because the priors' conditioning is
strictly local (:mod:`wavegen.nn.upsample` ``repeat``) and each window's uniforms are the
whole level's uniforms at those positions, an ``overlap`` of at least the prior's receptive
field gives exactly the codes of one pass; a shorter overlap forgets context beyond it
(the overlap's codes are the previous window's, by construction). The default window is
:data:`DEFAULT_WINDOW` codes with the receptive field as overlap. With ``progress`` each
level shows one progress bar (``level L``), advanced window by window.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from wavegen.checkpoint import BundleInfo, load_bundle
from wavegen.codes import LoadedAutoencoder, load_autoencoder
from wavegen.errors import CheckpointError, UsageError
from wavegen.inference.manifest import contained_path, named_file
from wavegen.sampling import GenerationResult, SamplingOptions, generate
from wavegen.sampling.draw import draw_uniforms
from wavegen.utils.atomic import atomic_write_text
from wavegen.utils.json_manifest import read_versioned_json

HIERARCHY_FILE = "hierarchy.json"
FORMAT_VERSION = 1
#: Codes per window when sampling a level in windows (see the module docstring).
DEFAULT_WINDOW = 4096
#: Largest hierarchy.json read.
_KEYS = {"wavegen_hierarchy", "vqvae", "priors", "description"}


# --------------------------------------------------------------------------- the manifest


@dataclass(frozen=True)
class HierarchyManifest:
    """What ``hierarchy.json`` names: the folder, the VQ-VAE bundle, the priors top first."""

    folder: Path
    vqvae: Path
    priors: tuple[Path, ...]
    description: str = ""


def hierarchy_file(path: str | os.PathLike) -> Path | None:
    """The ``hierarchy.json`` that ``path`` (a folder or the file) names, or None."""
    return named_file(path, HIERARCHY_FILE)


def is_hierarchy(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a hierarchy folder (or its ``hierarchy.json``)."""
    return hierarchy_file(path) is not None


def _inside(folder: Path, relative: object, what: str, where: Path) -> Path:
    """``folder/relative`` checked to stay inside ``folder`` (the pipeline manifests' rule,
    :func:`~wavegen.inference.manifest.contained_path`); it need not exist yet."""
    return contained_path(folder, relative, f"{where}: {what} ({relative!r})", must_exist=False)


def read_manifest(path: str | os.PathLike) -> HierarchyManifest:
    """The manifest at ``path``, checked (one-line CheckpointErrors)."""
    file = hierarchy_file(path)
    if file is None:
        raise CheckpointError(f"{path}: not a hierarchy (no {HIERARCHY_FILE})")
    data = read_versioned_json(file, "wavegen_hierarchy", FORMAT_VERSION, _KEYS,
                               "a hierarchy manifest")
    priors = data.get("priors")
    if not isinstance(priors, list) or not priors:
        raise CheckpointError(f"{file}: priors must be a non-empty list of bundle paths, "
                              f"top level first")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise CheckpointError(f"{file}: description must be a string")
    folder = file.parent
    return HierarchyManifest(folder, _inside(folder, data.get("vqvae"), "vqvae", file),
                             tuple(_inside(folder, p, f"priors[{i}]", file)
                                   for i, p in enumerate(priors)), description)


def write_manifest(folder: str | os.PathLike, vqvae: str, priors: list[str],
                   description: str = "") -> Path:
    """Write ``folder/hierarchy.json`` (atomically) naming bundles inside ``folder``."""
    folder = Path(folder)
    path = folder / HIERARCHY_FILE
    if not isinstance(priors, (list, tuple)) or not priors:
        raise CheckpointError(f"{path}: priors must be a non-empty list of bundle paths")
    _inside(folder, vqvae, "vqvae", path)
    for index, prior in enumerate(priors):
        _inside(folder, prior, f"priors[{index}]", path)
    if not isinstance(description, str):
        raise CheckpointError(f"{path}: description must be a string")
    data = {"wavegen_hierarchy": FORMAT_VERSION, "vqvae": vqvae, "priors": list(priors)}
    if description:
        data["description"] = description
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")
    return path


def assemble(output: str | os.PathLike, vqvae: str | os.PathLike,
             priors: list[str | os.PathLike], description: str = "") -> Path:
    """Make the hierarchy folder ``output`` from bundles (folders or ``checkpoints/latest``
    pointers): the VQ-VAE as ``vqvae/``, the priors (top first) as ``level{L}/``, each with
    its ``config.json`` and weights (the training state is left out), and
    ``hierarchy.json``; checked by loading it before it appears under its name. ``output``
    must not exist (nothing is overwritten); on any error nothing is left behind."""
    import shutil
    import tempfile

    from wavegen.checkpoint import (CONFIG_FILE, EMA_FILE, MODEL_FILE, read_bundle_info,
                                    resolve_bundle_path)
    from wavegen.utils.atomic import temporary_name

    output = Path(output)
    if output.exists():
        raise UsageError(f"{output} exists; give a new folder for the hierarchy")
    if not output.parent.is_dir():
        raise UsageError(f"cannot make {output}: its folder does not exist")
    if not priors:
        raise UsageError("give at least one prior (top level first)")
    sources = [("vqvae", resolve_bundle_path(vqvae))]
    for bundle in priors:
        path = resolve_bundle_path(bundle)
        info = read_bundle_info(path)
        level = getattr(info.model_config, "level", None)
        if info.family != "prior" or level is None:
            raise UsageError(f"{bundle} is family {info.family}, not a prior over codes")
        sources.append((f"level{level}", path))
    names = [name for name, _ in sources]
    if len(set(names)) != len(names):
        raise UsageError(f"two priors model the same level ({', '.join(names[1:])})")
    staging = Path(tempfile.mkdtemp(**temporary_name(output)))
    try:
        for name, path in sources:
            (staging / name).mkdir()
            for file in (CONFIG_FILE, MODEL_FILE, EMA_FILE):
                if (path / file).is_file():
                    shutil.copy2(path / file, staging / name / file)
        write_manifest(staging, "vqvae", names[1:], description)
        load_hierarchy(staging)
        staging.rename(output)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output / HIERARCHY_FILE


# --------------------------------------------------------------------------- loading


@dataclass
class LevelPrior:
    """One loaded prior: the model (eval mode), its bundle info and where it came from."""

    model: torch.nn.Module
    info: BundleInfo
    path: Path

    @property
    def config(self):
        return self.info.model_config

    @property
    def level(self) -> int:
        return int(self.config.level)


class Hierarchy:
    """A VQ-VAE and its priors, top level first, checked to fit (module docstring)."""

    def __init__(self, autoencoder: LoadedAutoencoder, priors: list[LevelPrior],
                 source: str = "hierarchy"):
        self.autoencoder = autoencoder
        self.priors = list(priors)
        self.source = source
        self._check()

    def _check(self) -> None:
        ae, where = self.autoencoder, self.source
        if not self.priors:
            raise CheckpointError(f"{where}: a hierarchy needs at least one prior")
        for index, prior in enumerate(self.priors):
            c, name = prior.config, prior.path
            if prior.info.family != "prior":
                raise CheckpointError(f"{where}: {name} is family {prior.info.family}, not a "
                                      f"prior over codes")
            if c.fingerprint != ae.fingerprint:
                raise CheckpointError(f"{where}: {name} learned the codes of bundle "
                                      f"{c.fingerprint or '(unknown)'}, but the VQ-VAE "
                                      f"{ae.source} is bundle {ae.fingerprint}")
            if not 0 <= c.level < ae.num_levels:
                raise CheckpointError(f"{where}: {name} models level {c.level}, but the VQ-VAE "
                                      f"has levels 0..{ae.num_levels - 1}")
            for what, ours, theirs in (("hop", c.code_hop, ae.hops[c.level]),
                                       ("codebook size", c.codebook_size, ae.codebook_size),
                                       ("sample rate", c.sample_rate, ae.sample_rate)):
                if ours != theirs:
                    raise CheckpointError(f"{where}: {name} has {what} {ours} at level "
                                          f"{c.level}, the VQ-VAE {theirs}")
            if index == 0:
                if c.conditioning == "codes":
                    raise CheckpointError(f"{where}: the top prior {name} is an upsampler "
                                          f"(conditioning codes); the first prior must be "
                                          f"unconditional or MIDI-conditioned")
                continue
            upper = self.priors[index - 1]
            if c.conditioning != "codes":
                raise CheckpointError(f"{where}: {name} (level {c.level}) must be an upsampler "
                                      f"conditioned on level {upper.level}'s codes, it is "
                                      f"conditioned on {c.conditioning}")
            ratio = ae.hops[upper.level] // ae.hops[c.level] if upper.level > c.level else 0
            if upper.level <= c.level or c.upper_ratio != ratio \
                    or c.upper_codebook_size != upper.config.codebook_size:
                raise CheckpointError(f"{where}: {name} (level {c.level}, {c.upper_ratio} "
                                      f"codes per upper code of {c.upper_codebook_size}) does "
                                      f"not fit under level {upper.level} (hops "
                                      f"{ae.hops[upper.level]} / {ae.hops[c.level]})")

    @property
    def levels(self) -> list[int]:
        """The levels the priors sample, top first."""
        return [p.level for p in self.priors]

    @property
    def sample_rate(self) -> int:
        return self.autoencoder.sample_rate

    def hop(self, level: int) -> int:
        return self.autoencoder.hops[level]

    def prior(self, level: int) -> LevelPrior:
        for prior in self.priors:
            if prior.level == level:
                return prior
        raise UsageError(f"{self.source}: no prior samples level {level} (levels "
                         f"{', '.join(map(str, self.levels))})")

    def check_level(self, level: int) -> int:
        self.prior(level)
        return level

    def unguided(self) -> list[int]:
        """Levels whose prior has no unconditional branch (trained without conditioning
        dropout): classifier-free guidance is not applied there."""
        return [p.level for p in self.priors if not p.config.cond_dropout > 0]

    @property
    def takes_midi(self) -> bool:
        return self.priors[0].config.conditioning == "roll"

    # ------------------------------------------------------------------ sampling
    def top_length(self, seconds: float | None, roll: torch.Tensor | None) -> int:
        """Codes of the top level for ``seconds`` of audio (or the roll's frames)."""
        if roll is not None:
            frames = roll.shape[-1]
            if seconds is not None:
                frames = min(frames, max(1, math.ceil(seconds * self.sample_rate
                                                      / self.hop(self.levels[0]))))
            return frames
        if seconds is None or not seconds > 0:
            raise UsageError("give --seconds (or --midi for a MIDI-conditioned hierarchy)")
        return max(1, math.ceil(seconds * self.sample_rate / self.hop(self.levels[0])))

    def sample(self, *, seconds: float | None = None, roll: torch.Tensor | None = None,
               prompt: torch.Tensor | None = None, from_codes: dict[int, torch.Tensor] | None = None,
               stop_level: int | None = None, options: SamplingOptions | None = None,
               window: int | None = DEFAULT_WINDOW, overlap: int | None = None,
               decode: bool = True, backend: str = "reference") -> "HierarchyResult":
        """Sample the hierarchy (module docstring).

        Args:
            seconds: length of the clip (the top level is rounded up to whole codes).
            roll: ``[C, frames]`` piano roll on the top level's grid (MIDI hierarchies).
            prompt: ``[T]`` audio to continue (encoded at every sampled level).
            from_codes: level -> ``[N]`` codes of an earlier run; the lowest level given and
                every level above it are taken as given.
            stop_level: the last level to sample (default: the finest prior's).
            options: the sampling options (seed, temperature, top-p, typical, CFG, progress).
            window, overlap: windowed sampling (module docstring); None = one pass per level.
            decode: also decode every level's codes into audio.
            backend: the sampling backend of the WaveNet priors (:func:`sample_windowed`).
        """
        options = options or SamplingOptions()
        if roll is not None and not self.takes_midi:
            raise UsageError(f"{self.source}: its top prior is unconditional; --midi is not used")
        if roll is None and self.takes_midi and not from_codes:
            raise UsageError(f"{self.source}: its top prior is MIDI-conditioned: give --midi")
        stop = self.levels[-1] if stop_level is None else self.check_level(stop_level)
        given = {self.check_level(int(k)): v.reshape(-1).long()
                 for k, v in (from_codes or {}).items()}
        resume_at = min(given) if given else None
        prompts = self._prompt_codes(prompt) if prompt is not None else {}
        result = HierarchyResult(self.sample_rate)
        upper_codes = None
        for prior in self.priors:
            level = prior.level
            if resume_at is not None and level >= resume_at:
                if level not in given:
                    raise UsageError(f"from-codes: level {level} is missing (the codes given "
                                     f"start at level {resume_at}; every level above it is "
                                     f"needed too)")
                codes = given[level][None]
                self._check_given(prior, codes, upper_codes)
                result.add(level, codes, self.hop(level), 0.0, None, sampled=False)
            else:
                codes, seconds_taken, generation = self._sample_level(
                    prior, upper_codes, seconds, roll, prompts.get(level), options, window,
                    overlap, backend)
                result.add(level, codes, self.hop(level), seconds_taken, generation,
                           sampled=True)
            upper_codes = codes
            if level == stop:
                break
        if decode:
            for level, entry in result.levels.items():
                start = time.perf_counter()
                with torch.inference_mode():
                    audio = self.autoencoder.model.decode(entry.codes.to(self.autoencoder.device),
                                                          level)
                entry.audio = audio.float().clamp(-1.0, 1.0).cpu()
                entry.decode_seconds = time.perf_counter() - start
        return result

    def _prompt_codes(self, prompt: torch.Tensor) -> dict[int, torch.Tensor]:
        from wavegen.codes import encode_audio

        levels = self.levels
        top_hop = self.hop(levels[0])
        audio = prompt.reshape(-1)
        whole = audio.numel() // top_hop * top_hop  # whole top codes: every level aligned
        if whole == 0:
            raise UsageError(f"--prompt is shorter than one top-level code ({top_hop} samples)")
        files = encode_audio(self.autoencoder, audio[:whole], levels, "prompt")
        return {f.level: f.codes[None] for f in files}

    def _check_given(self, prior: LevelPrior, codes: torch.Tensor,
                     upper: torch.Tensor | None) -> None:
        c = prior.config
        if codes.numel() == 0 or int(codes.min()) < 0 or int(codes.max()) >= c.codebook_size:
            raise UsageError(f"from-codes: level {c.level} codes must lie in "
                             f"[0, {c.codebook_size})")
        if upper is not None and codes.shape[-1] != upper.shape[-1] * c.upper_ratio:
            raise UsageError(f"from-codes: level {c.level} has {codes.shape[-1]} codes, but "
                             f"the {upper.shape[-1]} codes above it need "
                             f"{upper.shape[-1] * c.upper_ratio}")

    def _sample_level(self, prior: LevelPrior, upper: torch.Tensor | None,
                      seconds: float | None, roll: torch.Tensor | None,
                      prompt: torch.Tensor | None, options: SamplingOptions,
                      window: int | None, overlap: int | None, backend: str = "reference"):
        c = prior.config
        device = next(prior.model.parameters()).device
        local = None
        if c.conditioning == "codes":
            local = upper.to(device)
            total = upper.shape[-1] * c.upper_ratio
        elif c.conditioning == "roll":
            total = self.top_length(seconds, roll)
            local = roll[None, :, :total].to(device)
        else:
            total = self.top_length(seconds, None)
        if prompt is not None:
            prompt = prompt[:, :total].to(device)
            if prompt.shape[-1] >= total:
                raise UsageError(f"--prompt covers {prompt.shape[-1]} level-{c.level} codes, "
                                 f"the clip only {total}: ask for more --seconds")
        # Guidance needs an unconditional branch: only priors trained with conditioning
        # dropout have one (the others sample plainly; the caller is told by unguided()).
        guidance = options.cfg_gamma if c.cond_dropout > 0 else None
        level_options = SamplingOptions(options.temperature, options.top_p, options.typical,
                                        guidance, seed=_level_seed(options.seed, c.level),
                                        progress=options.progress)
        start = time.perf_counter()
        new = total - (0 if prompt is None else prompt.shape[-1])
        with tqdm(total=new, disable=not options.progress, unit="code", unit_scale=True,
                  desc=f"level {c.level}", leave=False) as bar:
            codes, generation = sample_windowed(
                prior.model, total, local=local, prompt=prompt,
                options=dataclasses.replace(level_options, progress=False), window=window,
                overlap=overlap, on_window=bar.update, backend=backend)
        return codes.cpu(), time.perf_counter() - start, generation


def _level_seed(seed: int | None, level: int) -> int:
    """Each level's own seed (so stopping and resuming at a level changes nothing)."""
    return (0 if seed is None else int(seed)) * 1000 + 17 * level + 1


def sample_windowed(model, total: int, *, local: torch.Tensor | None = None,
                    prompt: torch.Tensor | None = None, options: SamplingOptions,
                    window: int | None = DEFAULT_WINDOW, overlap: int | None = None,
                    uniforms: torch.Tensor | None = None, on_window=None,
                    backend: str = "reference") -> tuple[torch.Tensor, GenerationResult]:
    """Codes ``[B, total]`` from a code prior, prompt included, ``window`` codes at a time.

    Args:
        model: a :class:`~wavegen.models.prior.CodePrior` (any sample-level model whose
            samples are its targets).
        total: codes to end with (prompt included).
        local: conditioning covering all ``total`` positions (upper codes ``[B, F]``, a roll
            ``[B, C, F]``), or None.
        prompt: ``[B, P]`` codes to continue, or None.
        options: sampling options; its seed draws the uniforms of positions ``P..total``.
        window: most positions per call of the sampling loop (prompt context included);
            None samples in one pass. A model with a finite context (``max_positions``: a
            transformer prior) is never given more than that.
        overlap: codes re-read as the next window's prompt (default: the receptive field;
            half the context of a transformer).
        uniforms: ``[B, total - P, 1]`` pre-drawn uniforms (default: from ``options.seed``).
        on_window: called with the number of new codes after each window (progress bars).
        backend: a sampling backend of :mod:`wavegen.kernels` (``reference``, ``auto``,
            ``cpu``, ...). Other than ``reference``, a WaveNet prior's network
            (``fast_network()``) runs on it with the prior's conditioning features, drawing
            the same codes from the same uniforms; a transformer, a codebook that is not a
            power of two, or filters / guidance (which only the reference loop has) keep the
            reference loop.

    Returns:
        (codes ``[B, total]``, a GenerationResult of the new codes: NLL and entropy averaged
        over all windows, the loop's seconds summed).
    """
    batch = 1
    for tensor in (local, prompt):
        if tensor is not None:
            batch = tensor.shape[0]
    device = next(model.parameters()).device
    codes = (torch.zeros(batch, 0, dtype=torch.long, device=device) if prompt is None
             else prompt.long().to(device))
    first = codes.shape[1]
    if first >= total:
        raise UsageError(f"nothing to sample: the prompt has {first} codes of {total}")
    hop = model.config.hop_length or 1
    if local is not None and local.shape[-1] * hop != total:
        raise UsageError(f"the conditioning covers {local.shape[-1] * hop} codes, not {total}")
    limit = getattr(model, "max_positions", None)  # a transformer's context
    if limit is not None:
        window = limit if window is None else min(window, limit)
    if overlap is None:
        overlap = model.receptive_field if limit is None else limit // 2
    if window is not None and window < overlap + 2 * hop:
        raise UsageError(f"window ({window} codes) must exceed the overlap ({overlap}) by at "
                         f"least {2 * hop} codes")
    if uniforms is None:
        uniforms = draw_uniforms(batch, total - first, model.head.num_uniforms, options.seed,
                                 device)
    fast = None
    if backend != "reference" and hasattr(model, "fast_network") \
            and options.top_p is None and options.typical is None and not options.guided:
        fast = model.fast_network()
    nll = torch.zeros(batch)
    entropy = torch.zeros(batch)
    seconds = 0.0
    while codes.shape[1] < total:
        done = codes.shape[1]
        begin = 0 if window is None else max(0, done - overlap)
        begin -= begin % hop  # the conditioning is sliced on whole frames
        end = total if window is None else min(total, begin + window)
        end = total if end == total else begin + (end - begin) // hop * hop
        window_local = None if local is None else local[..., begin // hop:end // hop]
        context = codes[:, begin:done]
        prompt_codes = context.float()[:, None] if context.shape[1] else None
        if fast is not None:
            features = None if window_local is None else model.local_features(window_local)
            result = generate(fast, end - done, local=features, prompt=prompt_codes,
                              options=options, uniforms=uniforms[:, done - first:end - first],
                              backend=backend)
        else:
            result = generate(model, end - done, local=window_local, prompt=prompt_codes,
                              options=options, uniforms=uniforms[:, done - first:end - first])
        codes = torch.cat([codes, result.samples.to(codes.device).long()], dim=1)
        weight = (end - done) / (total - first)
        nll += result.mean_nll.float() * weight
        entropy += result.mean_entropy.float() * weight
        seconds += result.seconds
        if on_window is not None:
            on_window(end - done)
    new = codes[:, first:]
    return codes, GenerationResult(new.float()[:, None], new, nll, entropy, seconds)


@dataclass
class LevelResult:
    """One level of a sampled hierarchy: codes ``[1, N]`` of ``hop`` samples each at
    ``sample_rate``, audio ``[1, 1, N * hop]`` (after decoding), the sampling and decoding
    wall times, the loop's diagnostics, and whether the codes were sampled (False: given by
    ``from_codes``)."""

    level: int
    codes: torch.Tensor
    hop: int
    sample_rate: int
    seconds: float
    generation: GenerationResult | None
    sampled: bool
    audio: torch.Tensor | None = None
    decode_seconds: float = 0.0

    @property
    def audio_seconds(self) -> float:
        """Length of the level's audio: its codes times the hop, over the rate."""
        return self.codes.shape[-1] * self.hop / self.sample_rate


@dataclass
class HierarchyResult:
    """Every level sampled (top first): :class:`LevelResult` by level."""

    sample_rate: int
    levels: dict[int, LevelResult] = field(default_factory=dict)

    def add(self, level: int, codes, hop, seconds, generation, sampled) -> None:
        self.levels[level] = LevelResult(level, codes, hop, self.sample_rate, seconds,
                                         generation, sampled)

    @property
    def finest(self) -> LevelResult:
        return self.levels[min(self.levels)]

    @property
    def seconds(self) -> float:
        """Wall time of every level's sampling and decoding."""
        return sum(e.seconds + e.decode_seconds for e in self.levels.values())


def load_hierarchy(path: str | os.PathLike, *, use_ema: bool = True,
                   device: str | torch.device = "cpu") -> Hierarchy:
    """The hierarchy at ``path`` loaded (EMA weights unless ``use_ema`` is False) and checked."""
    manifest = read_manifest(path)
    autoencoder = load_autoencoder(manifest.vqvae, use_ema=use_ema, device=device)
    priors = []
    for bundle in manifest.priors:
        model, info = load_bundle(bundle, use_ema=use_ema, device=device)
        model.eval()
        priors.append(LevelPrior(model, info, bundle))
    return Hierarchy(autoencoder, priors, str(path))


__all__ = ["DEFAULT_WINDOW", "HIERARCHY_FILE", "assemble", "Hierarchy", "HierarchyManifest",
           "HierarchyResult", "LevelPrior", "LevelResult", "hierarchy_file", "is_hierarchy",
           "load_hierarchy", "read_manifest", "sample_windowed", "write_manifest"]
