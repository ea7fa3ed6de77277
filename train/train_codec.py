"""Train the mini codec (EnCodec's building blocks at reduced width) on rendered stems.

    accelerate launch train/train_codec.py --config configs/codec-mini.yaml
    accelerate launch train/train_codec.py --config configs/codec-mini.yaml steps=40000  # resumes

Reading order: config -> segments -> evaluation -> checkpoints -> main. The model, its
codebook upkeep and its losses live in stemcodec.codec (mini.py, codebooks.py, losses.py).
The device and number of processes come from `accelerate config`; everything runs in float32.
Run folder:
    OUT/model.safetensors + config.json   the latest codec: load_codec("OUT") reads it, and
                                          a copy in stemcodec/assets/codec-mini is `--codec mini`
    OUT/checkpoints/step_XXXXXXX/         full training state for resume (last few kept)
    OUT/log.jsonl, OUT/logs/              losses and validation (JSON lines, TensorBoard)
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import broadcast, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from stemcodec.audio import is_silent, resample
from stemcodec.checkpoint import load_pretrained
from stemcodec.codec import CONFIG_KEYS, DECODER_DEFAULTS, MINI_CONFIG, build_codec, save_codec
from stemcodec.codec.codebooks import (
    codebook_perplexity,
    init_codebooks,
    replace_dead_codes,
    sync_codebooks,
)
from stemcodec.codec.losses import (
    Balancer,
    MultiResolutionSTFT,
    MultiScaleMel,
    feature_matching,
    hinge_discriminator,
    hinge_generator,
)
from stemcodec.codec.mini import PARTS, CodecModule, preserving_init
from stemcodec.codec.tones import random_tones
from stemcodec.config import load_config, to_dict
from stemcodec.corpus.dataset import split_songs
from stemcodec.errors import UserError, cli
from stemcodec.metrics.quality import mel_distance, mrstft_distance, si_sdr

logger = logging.getLogger("train_codec")


# -- config ---------------------------------------------------------------------------------
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
    init: Literal["preserving", "default"] = "preserving"  # see preserving_init
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
    keep_last: int = 3
    stop_after: int | None = None  # stop (with a checkpoint) after this step: for tests/debug


# -- segments -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stem:
    path: str
    piece: str
    samples: int
    rate: int


def piece_key(piece: str) -> str:
    """Variants of one piece (`..._v0`, `..._v1`) share a key, so they share a split."""
    return re.sub(r"_v\d+$", "", piece)


def scan_corpora(folders: Sequence[str], include_mix: bool, min_samples: int,
                 rate: int) -> list[Stem]:
    """Every `CORPUS/<piece-id>/<slot>.wav` (and mix.wav if asked) under the folders; the
    piece is the file's folder. Hidden folders (unfinished renders) are skipped."""
    if not folders:
        raise UserError("data.corpora is empty; give rendered corpus folders "
                        "(python -m stemcodec.render --out CORPUS)")
    stems, short = [], 0
    for folder in folders:
        root = Path(folder)
        if not root.is_dir():
            raise UserError(f"data.corpora: {root} is not a folder")
        found = 0
        for path in sorted(root.rglob("*.wav")):
            rel = path.relative_to(root)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if path.name == "mix.wav" and not include_mix:
                continue
            try:
                info = sf.info(str(path))
            except (sf.LibsndfileError, RuntimeError, OSError) as exc:
                logger.warning("skipped %s: not readable as audio (%s)", path, exc)
                continue
            found += 1
            if info.frames * rate // info.samplerate < min_samples:
                short += 1
                continue
            stems.append(Stem(str(path), path.parent.name, int(info.frames), int(info.samplerate)))
        if not found:
            raise UserError(f"data.corpora: no .wav stems under {root} (expected "
                            "CORPUS/<piece-id>/<slot>.wav, as stemcodec.render writes)")
    if not stems:
        raise UserError(f"all {short} stems in {', '.join(folders)} are shorter than one "
                        "segment; lower data.segment_seconds")
    return stems


def split_stems(stems: list[Stem], valid_fraction: float) -> dict[str, list[Stem]]:
    """Stems of each split; a piece (with its variants) lies wholly in one."""
    split = split_songs(sorted({piece_key(s.piece) for s in stems}), valid_fraction)
    valid = set(split["valid"])
    out = {"train": [s for s in stems if piece_key(s.piece) not in valid],
           "valid": [s for s in stems if piece_key(s.piece) in valid]}
    if not out["train"]:
        raise UserError(f"no training pieces left after holding out data.valid_fraction="
                        f"{valid_fraction}; add pieces or lower it")
    return out


def read_segment(stem: Stem, start: int, length: int, rate: int) -> torch.Tensor:
    """`length` samples at `rate` from `start` (in the file's own samples): mono `[1, length]`."""
    need = math.ceil(length * stem.rate / rate) if stem.rate != rate else length
    data, _ = sf.read(stem.path, start=start, frames=need, dtype="float32", always_2d=True)
    wav = torch.from_numpy(np.ascontiguousarray(data.T)).mean(dim=0, keepdim=True)  # [1, s]
    if stem.rate != rate:
        wav = resample(wav, stem.rate, rate)
    return F.pad(wav, (0, max(0, length - wav.shape[-1])))[:, :length]


class SegmentDataset(Dataset):
    """Item i: a random segment, non-silent if one is found in `tries` draws. A pure function
    of (seed, i), so any batch can be rebuilt from its step alone (exact resume, any workers).
    Stems are drawn in proportion to their length."""

    def __init__(self, stems: list[Stem], length: int, rate: int, seed: int,
                 silence_db: float, tries: int = 10, tone_fraction: float = 0.0):
        self.stems, self.length, self.rate, self.seed = stems, length, rate, seed
        self.silence_db, self.tries, self.tone_fraction = silence_db, tries, tone_fraction
        spans = np.array([max(1, s.samples - self._need(s) + 1) for s in stems], dtype=np.float64)
        self.cumulative = np.cumsum(spans) / spans.sum()

    def _need(self, stem: Stem) -> int:
        return math.ceil(self.length * stem.rate / self.rate)

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
        if self.tone_fraction > 0 and rng.random() < self.tone_fraction:
            return random_tones(rng, self.length, self.rate)
        for _ in range(self.tries):
            i = min(int(np.searchsorted(self.cumulative, rng.random(), side="right")),
                    len(self.stems) - 1)
            stem = self.stems[i]
            start = int(rng.integers(0, max(1, stem.samples - self._need(stem) + 1)))
            wav = read_segment(stem, start, self.length, self.rate)
            if not is_silent(wav, self.silence_db):
                break
        return wav  # [1, S]


class StepSampler(Sampler):
    """Batch g = items [g*B*W + rank*B, ... + B): a function of the step, nothing to save."""

    def __init__(self, batch_size: int, start_batch: int, rank: int = 0, world: int = 1):
        self.batch_size, self.start_batch, self.rank, self.world = batch_size, start_batch, rank, world

    def __iter__(self) -> Iterator[list[int]]:
        batch = self.start_batch
        while True:
            first = (batch * self.world + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))
            batch += 1

    def __len__(self) -> int:
        return sys.maxsize


# -- schedule, progress ---------------------------------------------------------------------
def learning_rate(step: int, base: float, cfg: CodecTrainConfig) -> float:
    """Linear warmup, then cosine to base * min_lr_ratio at cfg.steps."""
    o = cfg.optim
    if step < o.warmup_steps:
        return base * (step + 1) / o.warmup_steps
    progress = min(1.0, (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps))
    return base * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class Progress:
    """The step counter, saved with the training state."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


# -- evaluation -----------------------------------------------------------------------------
def validation_segments(stems: list[Stem], cfg: CodecTrainConfig, length: int,
                        rate: int) -> torch.Tensor:
    """A fixed set of held-out non-silent segments [N, 1, S] (the same at every evaluation)."""
    if not stems or cfg.eval_segments <= 0:
        return torch.zeros(0, 1, length)
    data = SegmentDataset(stems, length, rate, cfg.seed + 1_000_003, cfg.data.silence_db)
    return torch.stack([data[i] for i in range(cfg.eval_segments)])


@torch.no_grad()
def evaluate(module: CodecModule, segments: torch.Tensor, mel: MultiScaleMel, batch_size: int,
             rate: int) -> dict[str, float]:
    """Reconstruction of held-out segments with all codebooks: the training mel loss and the
    eval metrics (mel distance, multi-resolution STFT distance, SI-SDR), averaged."""
    module.eval()
    device = next(module.parameters()).device
    sums = {"valid/mel_loss": 0.0, "valid/mel_distance": 0.0, "valid/mrstft": 0.0,
            "valid/si_sdr": 0.0}
    for first in range(0, segments.shape[0], batch_size):
        x = segments[first: first + batch_size].to(device)
        y = module(x)[0]
        sums["valid/mel_loss"] += float(mel(y, x)) * x.shape[0]
        for ref, est in zip(x.cpu(), y.cpu()):
            sums["valid/mel_distance"] += mel_distance(ref, est, rate)
            sums["valid/mrstft"] += mrstft_distance(ref, est)
            sums["valid/si_sdr"] += si_sdr(ref, est)
    module.train()
    return {k: v / segments.shape[0] for k, v in sums.items()}


# -- checkpoints ----------------------------------------------------------------------------
def export(module: CodecModule, cfg: CodecTrainConfig, step: int, directory: Path) -> None:
    """The codec as load_codec reads it, plus where it came from."""
    training = {"step": step, "corpora": list(cfg.data.corpora),
                "segment_seconds": cfg.data.segment_seconds, "adversarial": cfg.losses.adversarial,
                "init_from": cfg.init_from, "freeze": list(cfg.freeze)}
    save_codec(module.codec, {**cfg.model, "training": training}, directory)


def latest_checkpoint(out: Path) -> Path | None:
    folder = out / "checkpoints"
    done = sorted(p for p in folder.glob("step_*") if (p / "progress.json").is_file()) \
        if folder.is_dir() else []
    return done[-1] if done else None


def save_checkpoint(accelerator: Accelerator, module, progress: Progress,
                    cfg: CodecTrainConfig) -> Path:
    """Full state to a temporary folder, renamed when complete; the oldest beyond keep_last go."""
    out = Path(cfg.out)
    final = out / "checkpoints" / f"step_{progress.step:07d}"
    tmp = final.with_name(f".tmp_{final.name}")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(module)
        (tmp / "progress.json").write_text(json.dumps({"step": progress.step}) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        export(unwrapped, cfg, progress.step, out)
        for old in sorted((out / "checkpoints").glob("step_*"))[: -cfg.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def check_config(cfg: CodecTrainConfig) -> None:
    """The model mapping is MINI_CONFIG overridden by the config; a run folder resumes only
    with the architecture (and discriminator) it was started with."""
    unknown = sorted(set(cfg.model) - set(CONFIG_KEYS) - set(DECODER_DEFAULTS) - {"type", "name"})
    if unknown:
        raise UserError(f"unknown model key(s) {', '.join('model.' + k for k in unknown)}; "
                        f"valid: {', '.join((*CONFIG_KEYS, *DECODER_DEFAULTS))}, name")
    cfg.model = {**MINI_CONFIG, **cfg.model, "type": "encodec"}
    if cfg.model["channels"] != 1:
        raise UserError("model.channels: the codec trainer reads mono stems; use 1")
    if cfg.batch_size < 1 or cfg.steps < 1 or cfg.data.segment_seconds <= 0:
        raise UserError("batch_size, steps and data.segment_seconds must be positive")
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
    saved = Path(cfg.out) / "train_config.json"
    if saved.is_file() and latest_checkpoint(Path(cfg.out)) is not None:
        old = json.loads(saved.read_text())
        for key in sorted(set(old.get("model", {})) | set(cfg.model)):
            if old.get("model", {}).get(key) != cfg.model.get(key):
                raise UserError(f"{cfg.out} was trained with model.{key}="
                                f"{old.get('model', {}).get(key)!r}, not {cfg.model.get(key)!r}; "
                                "use another out folder")
        if sorted(old.get("freeze", [])) != sorted(cfg.freeze):
            raise UserError(f"{cfg.out} was trained with freeze={old.get('freeze', [])}, not "
                            f"{cfg.freeze}; keep it or use another out folder")
        if old.get("losses", {}).get("adversarial") != cfg.losses.adversarial:
            raise UserError(f"{cfg.out} was trained with losses.adversarial="
                            f"{old.get('losses', {}).get('adversarial')}; keep it or use another "
                            "out folder")


def load_init(codec: nn.Module, cfg: CodecTrainConfig) -> None:
    """Start from the weights of the codec folder cfg.init_from, of the same architecture."""
    folder = Path(cfg.init_from)
    if not (folder / "config.json").is_file():
        raise UserError(f"init_from={folder}: not a codec folder (config.json + "
                        "model.safetensors), e.g. stemcodec/assets/codec-mini or runs/codec-mini")
    state, saved = load_pretrained(folder)
    saved = {**DECODER_DEFAULTS, **saved}  # codecs saved before the iSTFT decoder: SEANet
    keys = CONFIG_KEYS if "decoder" not in cfg.init_parts else (*CONFIG_KEYS, *DECODER_DEFAULTS)
    for key in keys:
        if saved.get(key) != cfg.model.get(key):
            raise UserError(f"init_from={folder} has model.{key}={saved.get(key)!r}, this "
                            f"config {cfg.model.get(key)!r}; make them agree")
    state = {k: v for k, v in state.items() if k.split(".")[0] in cfg.init_parts}
    codec.load_state_dict(state, strict=False)


# -- main -----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> CodecTrainConfig:
    p = argparse.ArgumentParser(
        prog="train/train_codec.py", description="Train the mini codec on rendered stems.",
        epilog="Overrides: key=value with dotted keys, e.g. optim.lr=1e-4 "
               "data.corpora=[data/a,data/b] out=runs/codec-mini")
    p.add_argument("--config", type=Path, default=None, help="YAML config (configs/codec-*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    args = p.parse_args(argv)
    return load_config(CodecTrainConfig, args.config, args.overrides)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    check_config(cfg)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # its per-file save lines
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    rate = int(cfg.model["sample_rate"])
    hop = math.prod(cfg.model["ratios"])
    length = max(1, round(cfg.data.segment_seconds * rate / hop)) * hop  # whole frames
    stems = split_stems(scan_corpora(cfg.data.corpora, cfg.data.include_mix, length, rate),
                        cfg.data.valid_fraction)

    accelerator = Accelerator(log_with="tensorboard", project_dir=str(out / "logs"))
    set_seed(cfg.seed)
    codec = build_codec(cfg.model)
    resume = latest_checkpoint(out)
    if cfg.init == "preserving":
        preserving_init(codec)
    if cfg.init_from and resume is None:  # a resumed run has its own weights
        load_init(codec, cfg)
    module = CodecModule(codec, cfg.freeze)
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, betas=cfg.optim.betas,
                                  weight_decay=cfg.optim.weight_decay)
    mel = MultiScaleMel(rate, cfg.losses.mel_scales, cfg.losses.n_mels).to(accelerator.device)
    stft = MultiResolutionSTFT(cfg.losses.stft_windows)
    w = cfg.losses
    disc = d_optimizer = balancer = None
    if cfg.losses.adversarial:
        from encodec.msstftd import MultiScaleSTFTDiscriminator
        disc = MultiScaleSTFTDiscriminator(filters=cfg.losses.disc_filters)
        for sub in disc.discriminators:  # hann_window(n) is a view of n + 1 values, which
            sub.spec_transform.window = sub.spec_transform.window.clone()  # safetensors refuses
        d_optimizer = torch.optim.AdamW(disc.parameters(), lr=cfg.losses.disc_lr,
                                        betas=cfg.optim.betas, weight_decay=0.0)
        module, optimizer, disc, d_optimizer = accelerator.prepare(module, optimizer, disc,
                                                                   d_optimizer)
        weights = {"l1": w.l1, "mel": w.mel, "stft": w.stft, "adv": w.adv, "feat": w.feat}
        balancer = Balancer({k: v for k, v in weights.items() if v > 0},
                            total_norm=cfg.losses.balancer_norm)
        accelerator.register_for_checkpointing(balancer)
    else:
        module, optimizer = accelerator.prepare(module, optimizer)
    codec = accelerator.unwrap_model(module).codec
    progress = Progress()
    accelerator.register_for_checkpointing(progress)

    if resume is not None:
        accelerator.load_state(str(resume))
        logger.info("resumed from %s (step %d)", resume, progress.step)
    if progress.step >= cfg.steps:
        accelerator.print(f"{out} already trained for {progress.step} steps (steps={cfg.steps})")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        (out / "train_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    accelerator.init_trackers("train_codec", config=_flat(to_dict(cfg)))

    train_set = SegmentDataset(stems["train"], length, rate, cfg.seed, cfg.data.silence_db,
                               tone_fraction=cfg.data.tone_fraction)
    sampler = StepSampler(cfg.batch_size, progress.step, accelerator.process_index,
                          accelerator.num_processes)
    # its own generator: a loader must not draw from the global RNG (resume would diverge)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                        generator=torch.Generator())
    valid = validation_segments(stems["valid"], cfg, length, rate)
    n_params = sum(p.numel() for p in codec.parameters())
    accelerator.print(
        f"codec: {n_params / 1e6:.2f}M parameters"
        + (f" ({sum(p.numel() for p in trainable) / 1e6:.2f}M trained, {'+'.join(cfg.freeze)} "
           "frozen)" if cfg.freeze else "") + f"; {len(stems['train'])} train / "
        f"{len(stems['valid'])} valid stems; segments {length / rate:.2f} s x {cfg.batch_size}; "
        f"{accelerator.num_processes} process(es) on {accelerator.device}")

    bar = tqdm(total=cfg.steps, initial=progress.step, desc="train codec", dynamic_ncols=True,
               disable=not accelerator.is_main_process, file=sys.stderr)
    last_good = resume
    last_step = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    replaced, t0, steps_timed = 0, time.perf_counter(), 0
    module.train()
    try:
        for x in loader:
            x = x.to(accelerator.device)  # [B, 1, S]
            if progress.step == 0 and resume is None and not cfg.init_from:
                init_codebooks(codec, x, cfg.quantizer.kmeans_iters, broadcast)
            lr_scale = learning_rate(progress.step, 1.0, cfg)
            for group in optimizer.param_groups:
                group["lr"] = cfg.optim.lr * lr_scale
            y, penalty, emb = module(x)
            parts = {"l1": F.l1_loss(y, x), "mel": mel(y, x), "commit": penalty}
            if w.stft > 0:
                parts["stft"] = stft(y, x)

            if disc is not None:  # the discriminator's step, on real and (detached) fake
                for group in d_optimizer.param_groups:
                    group["lr"] = w.disc_lr * lr_scale
                logits, _ = disc(torch.cat([x, y.detach()]))
                real, fake = zip(*(logit.chunk(2) for logit in logits))
                d_loss = hinge_discriminator(list(real), list(fake))
                accelerator.backward(d_loss)
                if cfg.optim.grad_clip > 0:
                    accelerator.clip_grad_norm_(disc.parameters(), cfg.optim.grad_clip)
                d_optimizer.step()
                d_optimizer.zero_grad(set_to_none=True)
                parts["disc"] = d_loss.detach()
                plain = accelerator.unwrap_model(disc)  # grads flow to y only, not into D
                with torch.no_grad():
                    _, real_maps = plain(x)
                fake_logits, fake_maps = plain(y)
                parts["adv"] = hinge_generator(fake_logits)
                parts["feat"] = feature_matching(real_maps, fake_maps)

            loss = w.l1 * parts["l1"] + w.mel * parts["mel"] + w.commitment * parts["commit"] \
                + w.stft * parts.get("stft", 0.0)
            if not torch.isfinite(accelerator.reduce(loss.detach(), "max")):
                where = f"; the last good checkpoint {last_good} is intact" if last_good else ""
                raise UserError(f"loss became {loss.item()} at step {progress.step}{where}; "
                                "lower optim.lr")
            if balancer is not None:
                grad = balancer.gradient({k: parts[k] for k in balancer.weights}, y,
                                         lambda t: accelerator.reduce(t, "mean"))
                accelerator.backward((y * grad.detach()).sum() + w.commitment * parts["commit"])
            else:
                accelerator.backward(loss)
            if cfg.optim.grad_clip > 0:
                accelerator.clip_grad_norm_(trainable, cfg.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if "quantizer" not in cfg.freeze:
                if accelerator.num_processes > 1:  # every rank's batch shapes the codebooks
                    sync_codebooks(codec, lambda t: accelerator.reduce(t, "mean"))
                    emb = accelerator.gather(emb)
                replaced += replace_dead_codes(codec, emb, cfg.quantizer.dead_code, torch.Generator(
                    ).manual_seed(cfg.seed * 1_000_003 + progress.step))
            progress.step += 1
            steps_timed += 1
            bar.update(1)

            if progress.step % cfg.log_every == 0 or progress.step == last_step:
                rate_s = steps_timed / max(time.perf_counter() - t0, 1e-9)
                shown = {k: float(v.detach()) for k, v in parts.items()}
                record = {"step": progress.step, "loss": loss.item(), **shown,
                          "lr": cfg.optim.lr * lr_scale, "steps_per_s": rate_s,
                          "dead_codes_replaced": replaced,
                          **{f"perplexity_q{i}": p
                             for i, p in enumerate(codebook_perplexity(codec))}}
                bar.set_postfix(loss=f"{loss.item():.3f}", mel=f"{shown['mel']:.3f}")
                accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"},
                                step=progress.step)
                _append_log(accelerator, out, record)
                replaced, t0, steps_timed = 0, time.perf_counter(), 0
            if progress.step % cfg.eval_every == 0 or progress.step == last_step:
                if accelerator.is_main_process and valid.shape[0]:
                    metrics = evaluate(accelerator.unwrap_model(module), valid, mel,
                                       cfg.batch_size, rate)
                    accelerator.log(metrics, step=progress.step)
                    _append_log(accelerator, out, {"step": progress.step, **metrics})
                    bar.write(f"step {progress.step}: " + ", ".join(
                        f"{k[6:]} {v:.3f}" for k, v in metrics.items()))
                accelerator.wait_for_everyone()
            if progress.step % cfg.save_every == 0 or progress.step == last_step:
                last_good = save_checkpoint(accelerator, module, progress, cfg)
            if progress.step >= last_step:
                break
    finally:
        bar.close()
    accelerator.end_training()
    accelerator.print(f"trained to step {progress.step}; codec: {out} "
                      f"(load with load_codec('{out}'))")
    return 0


def _append_log(accelerator: Accelerator, out: Path, record: dict) -> None:
    """A plain JSON-lines log beside TensorBoard's, easy to read in tests and scripts."""
    if accelerator.is_main_process:
        with open(out / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")


def _flat(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return flat


if __name__ == "__main__":
    raise SystemExit(main())
