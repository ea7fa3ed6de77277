"""Train the mini codec (EnCodec's building blocks at reduced width) on rendered stems.

    accelerate launch train/train_codec.py --config configs/codec-mini.yaml
    accelerate launch train/train_codec.py --config configs/codec-mini.yaml steps=40000  # resumes

Reading order: config -> segments -> losses -> codebooks -> evaluation -> checkpoints -> main.
The device and number of processes come from `accelerate config`; everything runs in float32.
Run folder:
    OUT/model.safetensors + config.json   the latest codec: load_codec("OUT") reads it, and
                                          a copy in stemcodec/assets/codec-mini is `--codec mini`
    OUT/checkpoints/step_XXXXXXX/         full training state for resume (last few kept)
    OUT/log.jsonl, OUT/logs/              losses and validation (JSON lines, TensorBoard)

Codebooks. The `encodec` package updates its codebooks by EMA in training mode, but as used
here (build_encodec: no k-means init) it cannot train them: the EMA starts from a cluster
size of zero, which scales unused codes up by ~1e5 and the codebook collapses to a code or
two; and its dead-code replacement is a no-op (it writes `embed`, which the EMA step then
overwrites from `embed_avg`). So this script keeps the package's EMA update but does the rest
itself: codebooks start as k-means of the first batch's encodings with consistent EMA
statistics, and after each step a code used less than `quantizer.dead_code` times the
average is reset to a random encoding of the batch (EMA statistics included).

Initialisation. With PyTorch's default init the decoded audio of a fresh SEANet hardly
depends on its input (about 1e-4 of its level), and training sits on "the average spectrum"
for a long time; `init: preserving` (the default) redraws every convolution so that the
signal keeps its scale through the layers (see preserving_init).
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
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from accelerate import Accelerator
from accelerate.utils import broadcast, set_seed
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from stemcodec.audio import is_silent, resample
from stemcodec.checkpoint import load_pretrained
from stemcodec.codec import CONFIG_KEYS, MINI_CONFIG, build_encodec, save_codec
from stemcodec.config import load_config, to_dict
from stemcodec.corpus.dataset import split_songs
from stemcodec.errors import UserError, cli
from stemcodec.metrics.quality import mel_distance, mrstft_distance, si_sdr

logger = logging.getLogger("train_codec")
PARTS = ("encoder", "quantizer", "decoder")


# -- config ---------------------------------------------------------------------------------
@dataclass
class CodecDataConfig:
    corpora: list[str] = field(default_factory=lambda: ["data/codec-corpus"])  # rendered corpora
    segment_seconds: float = 1.0  # training segment (rounded to whole frames)
    valid_fraction: float = 0.1  # share of pieces held out (stable hash of the piece id)
    include_mix: bool = True  # mix.wav too, not only the stems
    silence_db: float = -50.0  # a segment below this RMS is drawn again
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
                 silence_db: float, tries: int = 10):
        self.stems, self.length, self.rate, self.seed = stems, length, rate, seed
        self.silence_db, self.tries = silence_db, tries
        spans = np.array([max(1, s.samples - self._need(s) + 1) for s in stems], dtype=np.float64)
        self.cumulative = np.cumsum(spans) / spans.sum()

    def _need(self, stem: Stem) -> int:
        return math.ceil(self.length * stem.rate / self.rate)

    def __len__(self) -> int:
        return sys.maxsize

    def __getitem__(self, index: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, index])
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


# -- losses ---------------------------------------------------------------------------------
class MultiScaleMel(nn.Module):
    """Mean over STFT sizes n_fft (hop n_fft/4) of L1 + L2 between log10 mel magnitudes,
    the reconstruction loss of the EnCodec paper (scales 2^5..2^11 there)."""

    def __init__(self, rate: int, scales: Sequence[int], n_mels: int = 64):
        super().__init__()
        self.scales = [int(n) for n in scales]
        for n_fft in self.scales:
            with warnings.catch_warnings():  # the smallest FFTs leave some mel bands empty
                warnings.simplefilter("ignore")
                fbank = AF.melscale_fbanks(n_fft // 2 + 1, 0.0, rate / 2, n_mels, rate,
                                           norm="slaney", mel_scale="htk")  # [F, n_mels]
            self.register_buffer(f"fbank_{n_fft}", fbank, persistent=False)
            self.register_buffer(f"window_{n_fft}", torch.hann_window(n_fft), persistent=False)

    def log_mel(self, wav: torch.Tensor, n_fft: int) -> torch.Tensor:
        """wav [B, 1, S] -> log10 mel magnitude [B, n_mels, frames]."""
        spec = torch.stft(wav.flatten(0, 1).float(), n_fft, n_fft // 4,
                          window=getattr(self, f"window_{n_fft}"), return_complex=True).abs()
        mel = torch.einsum("bft,fm->bmt", spec, getattr(self, f"fbank_{n_fft}"))
        return mel.clamp_min(1e-5).log10()

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for n_fft in self.scales:
            a, b = self.log_mel(estimate, n_fft), self.log_mel(reference, n_fft)
            total = total + F.l1_loss(a, b) + F.mse_loss(a, b)
        return total / len(self.scales)


def hinge_discriminator(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the discriminator, averaged over its scales."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)) / len(real)


def hinge_generator(fake: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - f).mean() for f in fake) / len(fake)


def feature_matching(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's feature maps, each relative to the real map's mean |.|."""
    terms = [F.l1_loss(f, r) / (r.abs().mean() + 1e-8)
             for rs, fs in zip(real, fake) for r, f in zip(rs, fs)]
    return sum(terms) / len(terms)


class Balancer:
    """EnCodec's loss balancer: the gradient each loss sends into the decoded audio is scaled
    so that its norm (a bias-corrected EMA over steps) is weight / sum(weights) * total_norm;
    the losses' scales then no longer matter, only their weights. Saved with the training
    state (register_for_checkpointing)."""

    def __init__(self, weights: dict[str, float], total_norm: float = 1.0, decay: float = 0.999):
        self.weights, self.total_norm, self.decay = weights, total_norm, decay
        self.sums = {name: 0.0 for name in weights}
        self.count = 0.0

    def gradient(self, losses: dict[str, torch.Tensor], audio: torch.Tensor,
                 reduce=lambda t: t) -> torch.Tensor:
        """The combined gradient for `audio` (to backpropagate as (audio * grad).sum()).
        `reduce` averages the norms over processes."""
        grads = [torch.autograd.grad(losses[name], [audio], retain_graph=True)[0]
                 for name in self.weights]
        norms = reduce(torch.stack([g.flatten(1).norm(dim=1).mean() for g in grads]))  # [L]
        self.count = self.count * self.decay + 1
        total_weight = sum(self.weights.values())
        out = torch.zeros_like(audio)
        for (name, weight), grad, norm in zip(self.weights.items(), grads, norms.tolist()):
            self.sums[name] = self.sums[name] * self.decay + norm
            average = self.sums[name] / self.count
            out += grad * (self.total_norm * weight / total_weight / (average + 1e-12))
        return out

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.count = dict(state["sums"]), float(state["count"])


# -- the model under training, and its codebooks --------------------------------------------
class CodecModule(nn.Module):
    """The EncodecModel in its training form: audio -> (decoded audio, commitment penalty,
    encodings). One forward per step, so accelerate (DDP) can wrap it."""

    def __init__(self, codec: nn.Module, freeze: Sequence[str] = ()):
        super().__init__()
        self.codec = codec
        self.frozen = set(freeze)
        self.frame_rate = codec.sample_rate / math.prod(codec.encoder.ratios)
        for layer in codec.quantizer.vq.layers:  # dead codes are ours (see the docstring)
            layer._codebook.threshold_ema_dead_code = 0
        for part in self.frozen:
            getattr(codec, part).requires_grad_(False)

    def train(self, mode: bool = True) -> CodecModule:
        super().train(mode)
        for part in self.frozen:  # eval mode: a frozen quantizer's EMA must not move either
            getattr(self.codec, part).eval()
        return self

    def forward(self, wav: torch.Tensor):
        # nothing to backpropagate into a frozen encoder: skip its graph and the quantizer's
        # (whose codebooks learn by EMA, not by gradient)
        with torch.set_grad_enabled(torch.is_grad_enabled() and "encoder" not in self.frozen):
            emb = self.codec.encoder(wav)  # [B, D, T]
            q = self.codec.quantizer(emb, self.frame_rate)  # all n_q codebooks
        out = self.codec.decoder(q.quantized)[..., : wav.shape[-1]]  # [B, 1, S]
        return out, q.penalty, emb.detach()


@torch.no_grad()
def preserving_init(codec: nn.Module, gain: float = 1.0) -> None:
    """Every convolution drawn from N(0, gain^2 / fan_in), fan_in counted per output sample
    (in_channels * kernel, divided by the stride for a transposed convolution), biases zero.
    PyTorch's default draws Var = 1 / (3 fan_in) (fan_in of the *output* channels for a
    transposed conv), which shrinks the signal 3x or more per layer: through SEANet's ~12
    layers the decoded audio at init hardly depends on the input, and training sits for
    thousands of steps on "the average spectrum". Weight norm is kept: g = |v| per channel."""
    for module in codec.modules():
        if not isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
            continue
        normed = hasattr(module, "weight_v")
        weight = module.weight_v if normed else module.weight
        k = module.kernel_size[0]
        if isinstance(module, nn.ConvTranspose1d):  # weight [in, out, k]
            fan_in = weight.shape[0] * k / module.stride[0]
        else:  # weight [out, in / groups, k]
            fan_in = weight.shape[1] * k
        weight.normal_(0.0, gain / math.sqrt(fan_in))
        if normed:  # weight_norm over dim 0: g holds the norm of each slice
            module.weight_g.copy_(weight.flatten(1).norm(dim=1).view_as(module.weight_g))
        if module.bias is not None:
            module.bias.zero_()


def _codebooks(codec: nn.Module):
    return [layer._codebook for layer in codec.quantizer.vq.layers]


def _kmeans(x: torch.Tensor, k: int, iters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """k-means of x [N, D] (matrix distances, no [N, k, D] tensor) -> (means [k, D], counts [k])."""
    means = x[torch.randperm(x.shape[0])[:k]] if x.shape[0] >= k else \
        x[torch.randint(0, x.shape[0], (k,))]
    counts = torch.zeros(k, device=x.device)
    for _ in range(max(1, iters)):
        nearest = torch.cdist(x, means).argmin(dim=1)  # [N]
        counts = torch.bincount(nearest, minlength=k).to(x.dtype)
        sums = torch.zeros_like(means).index_add_(0, nearest, x)
        means = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], means)
    return means, counts


@torch.no_grad()
def init_codebooks(codec: nn.Module, wav: torch.Tensor, iters: int) -> None:
    """Each residual codebook := k-means of its residuals over the encodings of wav [B, 1, S],
    with EMA statistics that agree with it (embed_avg = embed * cluster_size), the same on
    every process."""
    emb = codec.encoder(wav)  # [B, D, T]
    residual = emb.transpose(1, 2).reshape(-1, emb.shape[1])  # [B*T, D]
    for book in _codebooks(codec):
        means, counts = _kmeans(residual, book.codebook_size, iters)
        book.embed.copy_(broadcast(means.contiguous()))
        book.cluster_size.copy_(broadcast(counts.contiguous()))
        book.embed_avg.copy_(book.embed * book.cluster_size[:, None])
        residual = residual - F.embedding(book.quantize(residual), book.embed)


@torch.no_grad()
def replace_dead_codes(codec: nn.Module, emb: torch.Tensor, fraction: float) -> int:
    """Codes whose EMA use is below `fraction` x the average use get a random residual of this
    batch as their new vector, with the EMA statistics of an average code (so the next update
    keeps it, and it is not reset again before it had time to be used)."""
    if fraction <= 0:
        return 0
    residual = emb.transpose(1, 2).reshape(-1, emb.shape[1])  # [B*T, D]
    replaced = 0
    for book in _codebooks(codec):
        quantized = F.embedding(book.quantize(residual), book.embed)  # before any reset
        average = book.cluster_size.mean()
        dead = book.cluster_size < fraction * average
        n = int(dead.sum())
        if n:  # a fresh code starts as an average one: ~230 steps (decay 0.99) to prove itself
            fresh = residual[torch.randint(0, residual.shape[0], (n,), device=residual.device)]
            book.embed[dead] = fresh
            book.embed_avg[dead] = fresh * average
            book.cluster_size[dead] = average
            replaced += n
        residual = residual - quantized
    return replaced


def codebook_perplexity(codec: nn.Module) -> list[float]:
    """exp(entropy) of each codebook's EMA use: how many codes it effectively uses."""
    out = []
    for book in _codebooks(codec):
        p = book.cluster_size / book.cluster_size.sum().clamp_min(1e-12)
        out.append(float(torch.exp(-(p * p.clamp_min(1e-12).log()).sum())))
    return out


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
    unknown = sorted(set(cfg.model) - set(CONFIG_KEYS) - {"type", "name"})
    if unknown:
        raise UserError(f"unknown model key(s) {', '.join('model.' + k for k in unknown)}; "
                        f"valid: {', '.join(CONFIG_KEYS)}, name")
    cfg.model = {**MINI_CONFIG, **cfg.model, "type": "encodec"}
    if cfg.model["channels"] != 1:
        raise UserError("model.channels: the codec trainer reads mono stems; use 1")
    if cfg.batch_size < 1 or cfg.steps < 1 or cfg.data.segment_seconds <= 0:
        raise UserError("batch_size, steps and data.segment_seconds must be positive")
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
    for key in CONFIG_KEYS:
        if saved.get(key) != cfg.model.get(key):
            raise UserError(f"init_from={folder} has model.{key}={saved.get(key)!r}, this "
                            f"config {cfg.model.get(key)!r}; make them agree")
    codec.load_state_dict(state)


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
    codec = build_encodec(cfg.model)
    resume = latest_checkpoint(out)
    if cfg.init_from and resume is None:  # a resumed run has its own weights
        load_init(codec, cfg)
    elif cfg.init == "preserving":
        preserving_init(codec)
    module = CodecModule(codec, cfg.freeze)
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, betas=cfg.optim.betas,
                                  weight_decay=cfg.optim.weight_decay)
    mel = MultiScaleMel(rate, cfg.losses.mel_scales, cfg.losses.n_mels).to(accelerator.device)
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
        balancer = Balancer({"l1": cfg.losses.l1, "mel": cfg.losses.mel,
                             "adv": cfg.losses.adv, "feat": cfg.losses.feat},
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

    train_set = SegmentDataset(stems["train"], length, rate, cfg.seed, cfg.data.silence_db)
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
    w = cfg.losses
    replaced, t0, steps_timed = 0, time.perf_counter(), 0
    module.train()
    try:
        for x in loader:
            x = x.to(accelerator.device)  # [B, 1, S]
            if progress.step == 0 and resume is None and not cfg.init_from:
                init_codebooks(codec, x, cfg.quantizer.kmeans_iters)
            lr_scale = learning_rate(progress.step, 1.0, cfg)
            for group in optimizer.param_groups:
                group["lr"] = cfg.optim.lr * lr_scale
            y, penalty, emb = module(x)
            parts = {"l1": F.l1_loss(y, x), "mel": mel(y, x), "commit": penalty}

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

            loss = w.l1 * parts["l1"] + w.mel * parts["mel"] + w.commitment * parts["commit"]
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
                replaced += replace_dead_codes(codec, emb, cfg.quantizer.dead_code)
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
