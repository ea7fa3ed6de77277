"""The configs of both trainers (train/train.py, train/train_codec.py) and their checks.

    cfg = parse_args(TrainConfig, ["--config", "configs/mini.yaml", "optim.lr=1e-4"])

The field names are those of the YAML files and of every run folder's train_config.json, so a
renamed field would stop old runs from resuming. A launch into a run folder that has a
train_config.json starts from that config (`train.py out=runs/mini` alone resumes the run);
the launch's `--config` file and overrides go on top.
"""

from __future__ import annotations

import argparse
import json
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ..codec import CONFIG_KEYS, DECODER_DEFAULTS, MINI_CONFIG
from ..codec.mini import PARTS
from ..config import ConfigError, describe, load_config
from ..corpus.dataset import DataConfig
from ..errors import UserError
from ..model.config import ModelConfig
from .run import TRAIN_CONFIG

T = TypeVar("T")


# -- the generator (train/train.py) ---------------------------------------------------------
@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    out: str = "runs/mini"
    seed: int = 0
    steps: int = 5000  # optimizer steps
    batch_size: int = 16  # windows per process per micro-step
    grad_accum: int = 1
    # 0: no EMA; else validation and the exported model use the EMA weights (1: those of step 1)
    ema_decay: float = 0.0
    log_every: int = 10
    eval_every: int = 500
    eval_batches: int = 50
    save_every: int = 500
    keep_last: int = 3  # checkpoints kept (at least 1: the one just written)
    codec_id: str | None = None  # if set, the cache must have been made with this codec
    stop_after: int | None = None  # stop (with a checkpoint) after this step: for tests/debug


# -- the mini codec (train/train_codec.py) --------------------------------------------------
@dataclass
class CodecDataConfig:
    corpora: list[str] = field(default_factory=lambda: ["data/codec-corpus"])  # rendered corpora
    segment_seconds: float = 1.0  # training segment (rounded to whole frames)
    valid_fraction: float = 0.1  # share of pieces held out (stable hash of the piece id)
    include_mix: bool = True  # mix.wav too, not only the stems
    silence_db: float = -50.0  # a segment below this RMS is drawn again
    # share of segments replaced by synthetic harmonic tones (stemcodec.codec.tones)
    tone_fraction: float = 0.0
    num_workers: int = 0


@dataclass
class CodecOptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)  # EnCodec's
    weight_decay: float = 0.0
    warmup_steps: int = 500
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    grad_clip: float = 1.0  # 0: off


@dataclass
class LossConfig:
    l1: float = 0.1  # waveform L1
    mel: float = 1.0  # multi-scale log-mel L1 + L2
    mel_scales: list[int] = field(default_factory=lambda: [64, 128, 256, 512, 1024, 2048])
    n_mels: int = 64
    # multi-resolution STFT on linear frequency (windows long enough to resolve harmonics)
    stft: float = 0.0
    stft_windows: list[int] = field(default_factory=lambda: [512, 1024, 2048, 4096])
    # log magnitudes in bands equally spaced in log frequency (losses.LogFrequencySTFT)
    log_frequency: float = 0.0
    log_frequency_windows: list[int] = field(default_factory=lambda: [2048, 4096])
    # an iSTFT decoder's phase advance per bin against the reference's (its partials' frequency)
    phase: float = 0.0
    # with an accumulated phase (and losses.phase > 0) the frequency head learns from the
    # phase-advance loss alone: the waveform losses' gradient through the running sum adds up
    # over every later frame, 10x the rest of the model's, and grad_clip then shrinks every
    # other parameter's step with it (docs/codec.md, "Fourth look")
    phase_trains_frequency: bool = True
    # an iSTFT decoder's own frames before overlap-add, against the reference on the same
    # frames (losses.FrameSpectrum): log magnitude, and the phase step from bin to bin
    frame_magnitude: float = 0.0
    group_delay: float = 0.0
    commitment: float = 1.0  # the quantizer's commitment penalty (not balanced)
    adversarial: bool = False  # MS-STFT discriminator + feature matching, through the balancer
    adv: float = 3.0
    feat: float = 3.0
    disc_filters: int = 16
    disc_lr: float = 3e-4
    balancer_norm: float = 1.0  # total gradient norm the balancer hands to the decoded audio


@dataclass
class QuantizerConfig:
    kmeans_iters: int = 10  # codebooks start as k-means of the first batch's encodings
    dead_code: float = 0.1  # reset a code whose EMA use falls below this x the average use


@dataclass
class CodecTrainConfig:
    model: dict[str, Any] = field(default_factory=lambda: dict(MINI_CONFIG))
    data: CodecDataConfig = field(default_factory=CodecDataConfig)
    optim: CodecOptimConfig = field(default_factory=CodecOptimConfig)
    losses: LossConfig = field(default_factory=LossConfig)
    quantizer: QuantizerConfig = field(default_factory=QuantizerConfig)
    init: Literal["preserving", "default"] = "preserving"  # see codec.mini.preserving_init
    # how open a decoder_noise gate starts (g in (0, 1) in every bin): None keeps the decoder's
    # own start, closed (g ~ 0.05); an open gate starts every bin noisy, and the phase-advance
    # loss closes it where the music is tonal (docs/codec.md)
    init_gate: float | None = None
    # a codec folder (config.json + model.safetensors) whose weights start a new run, e.g.
    # stemcodec/assets/codec-mini; its codebooks are kept (no k-means, no `init`)
    init_from: str | None = None
    # the parts taken from init_from: [encoder, quantizer] keeps its tokens and trains a new
    # decoder (of any type) for them, from scratch
    init_parts: list[str] = field(default_factory=lambda: list(PARTS))
    # parts kept fixed: [encoder, quantizer] trains the decoder alone, so the tokens (and the
    # codec id, the token caches and the generators trained on them) stay valid
    freeze: list[str] = field(default_factory=list)
    out: str = "runs/codec-mini"
    seed: int = 0
    steps: int = 20000
    batch_size: int = 16
    threads: int = 0  # torch CPU threads; 0: torch's default
    log_every: int = 25
    eval_every: int = 1000
    eval_segments: int = 64
    save_every: int = 1000
    keep_last: int = 3  # checkpoints kept (at least 1: the one just written)
    stop_after: int | None = None  # stop (with a checkpoint) after this step: for tests/debug


# -- reading and checking -------------------------------------------------------------------
# what one launch asks for, not a setting of the run: a relaunch does not inherit it
PER_LAUNCH = ("stop_after",)


def parse_args(cls: type[T], argv: Sequence[str] | None, prog: str, description: str,
               example: str) -> T:
    """`--config FILE` and `key=value` overrides into the config dataclass `cls`, on top of
    the run folder's stored config when `out` already holds a run (see stored_config)."""
    p = argparse.ArgumentParser(prog=prog, description=description,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=keys_help(cls, example))
    p.add_argument("--config", type=Path, default=None, help="YAML config (configs/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    args = p.parse_args(argv)
    cfg = load_config(cls, args.config, args.overrides)
    out = Path(cfg.out)  # type: ignore[attr-defined]
    stored = stored_config(out)
    if stored is None:
        return cfg
    try:
        return load_config(cls, args.config, args.overrides, base=stored)
    except ConfigError as exc:  # a key of an older version, or a hand-edited file
        raise ConfigError(f"{out / TRAIN_CONFIG}: {exc}; fix the file or use another out "
                          "folder") from None


def stored_config(out: Path) -> dict[str, Any] | None:
    """The config a run folder was last launched with, as the base of a relaunch: without
    the per-launch keys, and with `out` set to the folder it was read from (a moved run
    trains where it is now)."""
    path = out / TRAIN_CONFIG
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is unreadable ({exc}); fix it or use another out folder") from None
    if not isinstance(stored, dict):
        raise UserError(f"{path} must hold a mapping of keys to values")
    for key in PER_LAUNCH:
        stored.pop(key, None)
    return {**stored, "out": str(out)}


def keys_help(cls: type, example: str) -> str:
    """The --help epilog: how overrides work, and every key with its default and comment."""
    rows = describe(cls)
    width = min(34, max(len(k) + len(v) + 1 for k, v, _ in rows))
    intro = (f"Overrides: key=value with dotted keys, e.g. {example}. Each key takes its "
             f"default (below), then the value in the run folder's {TRAIN_CONFIG} when `out` "
             "already holds a run (so `out=DIR` alone resumes it; "
             f"{', '.join(PER_LAUNCH)} is not kept), then the --config file's, then the "
             "override's.")
    lines = [*textwrap.wrap(intro, 100), "", "keys (default, what):"]
    for key, value, note in rows:
        entry = f"  {key}={value}"
        if not note:
            lines.append(entry)
            continue
        pad = max(width + 3, len(entry) + 2)
        lines.extend(textwrap.wrap(note, 100, initial_indent=entry.ljust(pad),
                                   subsequent_indent=" " * (width + 3)))
    return "\n".join(lines)


def check_run(cfg: TrainConfig | CodecTrainConfig) -> None:
    """The counts both trainers share: a bad one is a one-line error before any work."""
    for key in ("steps", "batch_size", "log_every", "eval_every", "save_every"):
        if getattr(cfg, key) < 1:
            raise UserError(f"{key} must be at least 1, got {getattr(cfg, key)}")
    if cfg.keep_last < 1:  # keep_last=0 would delete the checkpoint just written
        raise UserError(f"keep_last={cfg.keep_last}: a run keeps at least its latest checkpoint; "
                        "give 1 or more")


def check_train_config(cfg: TrainConfig) -> None:
    """What train/train.py refuses before it reads the cache."""
    check_run(cfg)
    if cfg.grad_accum < 1:
        raise UserError(f"grad_accum must be at least 1, got {cfg.grad_accum}")
    if not 0.0 <= cfg.ema_decay <= 1.0:
        raise UserError(f"ema_decay must be in [0, 1] (0: no EMA), got {cfg.ema_decay}")


def check_codec_config(cfg: CodecTrainConfig) -> None:
    """The model mapping becomes MINI_CONFIG overridden by the config; the freeze and init
    options must leave something to train."""
    unknown = sorted(set(cfg.model) - set(CONFIG_KEYS) - set(DECODER_DEFAULTS) - {"type", "name"})
    if unknown:
        raise UserError(f"unknown model key(s) {', '.join('model.' + k for k in unknown)}; "
                        f"valid: {', '.join((*CONFIG_KEYS, *DECODER_DEFAULTS))}, name")
    cfg.model = {**MINI_CONFIG, **cfg.model, "type": "encodec"}
    if cfg.model["channels"] != 1:
        raise UserError("model.channels: the codec trainer reads mono stems; use 1")
    if cfg.data.segment_seconds <= 0:
        raise UserError("data.segment_seconds must be positive")
    check_run(cfg)
    bad_parts = sorted(set(cfg.init_parts) - set(PARTS))
    if bad_parts or not cfg.init_parts:
        raise UserError(f"init_parts={cfg.init_parts}: give some of {', '.join(PARTS)}")
    bad = sorted(set(cfg.freeze) - set(PARTS))
    if bad:
        raise UserError(f"freeze={cfg.freeze}: {', '.join(bad)} unknown; give some of "
                        f"{', '.join(PARTS)}")
    if {"encoder", "decoder"} <= set(cfg.freeze):  # the quantizer has no trained parameters
        raise UserError(f"freeze={cfg.freeze}: nothing would train; leave the encoder or the "
                        "decoder out")
    if "quantizer" in cfg.freeze and "encoder" not in cfg.freeze:
        # a quantizer in eval mode passes no gradient through (no straight-through estimate)
        raise UserError(f"freeze={cfg.freeze}: a frozen quantizer passes no gradient to the "
                        "encoder; freeze both ([encoder,quantizer]) or neither")
