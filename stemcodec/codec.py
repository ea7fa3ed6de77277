"""EnCodec behind one small interface: `encode(wav[B, C, S]) -> codes[B, Q, T]`, `decode`.

Codecs by name:
  encodec_24khz / encodec_48khz   the official models, weights from the torch hub cache or a
                                  folder (`repository`), sha256 prefix in the name verified
  mini                            our small codec bundled in stemcodec/assets/codec-mini
  debug                           a tiny random codec (fixed seed) for tests and smoke runs
  <folder>                        a codec checkpoint of ours: model.safetensors + config.json
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import torch

# encodec 0.1.1 builds weight norm the old way; the warning is not ours to act on
warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated", category=FutureWarning)

from encodec import EncodecModel  # noqa: E402
from encodec.modules import SEANetDecoder, SEANetEncoder  # noqa: E402
from encodec.quantization import ResidualVectorQuantizer  # noqa: E402

from .checkpoint import (  # noqa: E402
    bundled,
    file_sha256,
    load_pretrained,
    save_pretrained,
    state_hash,
)
from .errors import UserError  # noqa: E402

OFFICIAL = {
    "encodec_24khz": {"file": "encodec_24khz-d7cc33bc.th", "bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0],
                      "default": 6.0},
    "encodec_48khz": {"file": "encodec_48khz-7e698e3e.th", "bandwidths": [3.0, 6.0, 12.0, 24.0],
                      "default": 6.0},
}
DOWNLOAD_ROOT = "https://dl.fbaipublicfiles.com/encodec/v0/"

# The mini layout: 24 kHz mono, hop 320 (75 frames/s), 4 codebooks of 1024 = 3 kbps.
MINI_CONFIG: dict[str, Any] = {
    "type": "encodec", "name": "mini", "sample_rate": 24000, "channels": 1, "n_filters": 16,
    "ratios": [8, 5, 4, 2], "dimension": 64, "lstm": 1, "causal": True, "norm": "weight_norm",
    "n_q": 4, "bins": 1024, "target_bandwidths": [1.5, 3.0],
}
DEBUG_CONFIG: dict[str, Any] = {**MINI_CONFIG, "name": "debug", "n_filters": 4, "dimension": 16,
                                "lstm": 0}


class CodecError(UserError):
    pass


class Codec:
    """An EnCodec model at one bandwidth, encoding and decoding in bounded-memory chunks.

    Args:
        model: the `encodec.EncodecModel`.
        name: short name (encodec_24khz, mini, debug, or a folder name).
        bandwidth: kbps; sets the number of codebooks Q.
        weights_hash: hex digest of the weights, part of the codec id.
        chunk_seconds: audio per chunk; `context_seconds` of left context are re-encoded
            with each chunk and dropped, so chunk seams are nearly inaudible.
    """

    def __init__(self, model: EncodecModel, name: str, bandwidth: float, weights_hash: str,
                 chunk_seconds: float = 30.0, context_seconds: float = 1.0,
                 unit_rms: bool = False):
        self.model = model.eval()
        self.name = name
        self.bandwidth = float(bandwidth)
        self.sample_rate = int(model.sample_rate)
        self.channels = int(model.channels)
        self.hop_length = int(math.prod(model.encoder.ratios))
        self.frame_rate = self.sample_rate / self.hop_length
        self.cardinality = int(model.quantizer.bins)
        self.num_codebooks = int(model.quantizer.get_num_quantizers_for_bandwidth(
            self.frame_rate, self.bandwidth))
        self.weights_hash = weights_hash
        self.codec_id = (f"{name}-{self.bandwidth:g}kbps-{self.sample_rate}hz-"
                         f"{weights_hash[:12]}")
        self.chunk_frames = max(1, int(chunk_seconds * self.frame_rate))
        self.context_frames = int(context_seconds * self.frame_rate)
        # 48 kHz EnCodec was trained on RMS-normalised input; tokens cannot carry the scale,
        # so input goes in at unit RMS and output comes back at a fixed reference level.
        self.unit_rms = unit_rms

    def info(self) -> dict[str, Any]:
        return {"id": self.codec_id, "name": self.name, "sample_rate": self.sample_rate,
                "frame_rate": self.frame_rate, "num_codebooks": self.num_codebooks,
                "cardinality": self.cardinality, "channels": self.channels,
                "bandwidth": self.bandwidth, "hop_length": self.hop_length}

    def to(self, device: torch.device | str) -> Codec:
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, C, S] at `sample_rate` -> codes [B, Q, T] int64, T = ceil(S / hop_length)."""
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise ValueError(f"expected wav [B, {self.channels}, S], got {tuple(wav.shape)}")
        wav = wav.to(self.device, torch.float32)
        if self.unit_rms:
            wav = wav / wav.pow(2).mean(dim=(1, 2), keepdim=True).sqrt().clamp_min(1e-8)
        total = math.ceil(wav.shape[-1] / self.hop_length)
        pieces = []
        for first in range(0, total, self.chunk_frames):
            last = min(first + self.chunk_frames, total)
            ctx = min(self.context_frames, first)
            x = wav[..., (first - ctx) * self.hop_length: last * self.hop_length]
            emb = self.model.encoder(x)
            codes = self.model.quantizer.encode(emb, self.frame_rate, self.bandwidth)
            pieces.append(codes.transpose(0, 1)[..., ctx: ctx + last - first])  # [B, Q, t]
        return torch.cat(pieces, dim=-1).long()

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, Q, T] -> wav [B, C, T * hop_length]."""
        if codes.dim() != 3:
            raise ValueError(f"expected codes [B, Q, T], got {tuple(codes.shape)}")
        codes = codes.to(self.device)
        total = codes.shape[-1]
        pieces = []
        for first in range(0, total, self.chunk_frames):
            last = min(first + self.chunk_frames, total)
            ctx = min(self.context_frames, first)
            emb = self.model.quantizer.decode(codes[..., first - ctx: last].transpose(0, 1))
            out = self.model.decoder(emb)
            pieces.append(out[..., ctx * self.hop_length: (ctx + last - first) * self.hop_length])
        wav = torch.cat(pieces, dim=-1)
        return wav * 0.1 if self.unit_rms else wav


# -- building and saving our own codecs -------------------------------------------------------
def build_encodec(cfg: dict[str, Any]) -> EncodecModel:
    """An EncodecModel from the package's blocks, sized by `cfg` (see MINI_CONFIG)."""
    common = dict(channels=cfg["channels"], dimension=cfg["dimension"],
                  n_filters=cfg["n_filters"], ratios=list(cfg["ratios"]), lstm=cfg["lstm"],
                  causal=cfg["causal"], norm=cfg["norm"])
    encoder, decoder = SEANetEncoder(**common), SEANetDecoder(**common)
    quantizer = ResidualVectorQuantizer(dimension=cfg["dimension"], n_q=cfg["n_q"],
                                        bins=cfg["bins"], kmeans_init=False)
    return EncodecModel(encoder, decoder, quantizer, list(cfg["target_bandwidths"]),
                        cfg["sample_rate"], cfg["channels"], normalize=False,
                        name=cfg.get("name", "unset"))


def save_codec(model: EncodecModel, cfg: dict[str, Any], directory: str | os.PathLike) -> Path:
    return save_pretrained(directory, model.state_dict(), cfg)


def _from_config(cfg: dict[str, Any], state: dict[str, torch.Tensor] | None, name: str,
                 bandwidth: float | None) -> Codec:
    model = build_encodec(cfg)
    if state is not None:
        model.load_state_dict(state)
    bandwidths = list(cfg["target_bandwidths"])
    bandwidth = bandwidths[-1] if bandwidth is None else bandwidth
    _check_bandwidth(name, bandwidth, bandwidths)
    return Codec(model, name, bandwidth, state_hash(model.state_dict()))


def _check_bandwidth(name: str, bandwidth: float, valid: list[float]) -> None:
    if float(bandwidth) not in [float(b) for b in valid]:
        raise CodecError(f"{name} has no bandwidth {bandwidth:g} kbps; "
                         f"valid: {', '.join(f'{b:g}' for b in valid)}")


# -- the official models --------------------------------------------------------------------
def hub_checkpoints() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_official_weights(name: str, repository: str | os.PathLike | None = None) -> Path:
    """The weights file of an official model: its official name, or `<name>-<sha>.th` whose
    content hash starts with `<sha>`. Verified before anything reads it."""
    expected = OFFICIAL[name]["file"]
    folders = [Path(repository)] if repository is not None else [hub_checkpoints()]
    if repository is not None and not Path(repository).is_dir():
        raise CodecError(f"--codec-repo {repository} is not a folder")
    for folder in folders:
        candidates = [folder / expected] + sorted(folder.glob(f"{name}-*.th"))
        for path in candidates:
            match = re.fullmatch(rf"{name}-([0-9a-f]+)\.th", path.name)
            if not path.is_file() or not match:
                continue
            checksum = match.group(1)
            actual = file_sha256(path)[: len(checksum)]
            if actual != checksum:
                raise CodecError(f"{path}: checksum mismatch (name says {checksum}, content is "
                                 f"{actual}); the file is corrupt or not {name}: download it again")
            return path
    where = ", ".join(str(f) for f in folders)
    raise CodecError(f"missing EnCodec weights {expected} (looked in {where}); download "
                     f"{DOWNLOAD_ROOT}{expected} into {hub_checkpoints()} or a folder given "
                     "with --codec-repo DIR")


def _official(name: str, bandwidth: float | None, repository) -> Codec:
    spec = OFFICIAL[name]
    bandwidth = spec["default"] if bandwidth is None else bandwidth
    _check_bandwidth(name, bandwidth, spec["bandwidths"])
    path = find_official_weights(name, repository)
    if name == "encodec_24khz":
        model = EncodecModel._get_model(spec["bandwidths"], 24000, 1, causal=True,
                                        model_norm="weight_norm", audio_normalize=False,
                                        name=name)
    else:
        model = EncodecModel._get_model(spec["bandwidths"], 48000, 2, causal=False,
                                        model_norm="time_group_norm", audio_normalize=True,
                                        segment=None, name=name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError) as exc:
        raise CodecError(f"{path} is not a usable {name} state dict "
                         f"({str(exc).splitlines()[0][:120]})") from None
    return Codec(model, name, bandwidth, file_sha256(path), unit_rms=(name == "encodec_48khz"))


def load_codec(name: str = "encodec_24khz", bandwidth: float | None = None,
               repository: str | os.PathLike | None = None,
               device: torch.device | str = "cpu") -> Codec:
    """Load a codec by name (see the module docstring) and move it to `device`."""
    if name in OFFICIAL:
        codec = _official(name, bandwidth, repository)
    elif name == "debug":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            codec = _from_config(DEBUG_CONFIG, None, "debug", bandwidth)
    elif name == "mini":
        path = bundled("codec-mini")
        if path is None:
            raise CodecError(
                "the bundled mini codec is not in this install; train it with `accelerate launch "
                "train/train_codec.py --config configs/codec-mini.yaml`, or use --codec "
                "encodec_24khz --codec-repo DIR")
        state, cfg = load_pretrained(path)
        codec = _from_config(cfg, state, "mini", bandwidth)
    elif Path(name).is_dir():
        state, cfg = load_pretrained(name)
        if cfg.get("type") != "encodec":
            raise CodecError(f"{name} is a checkpoint, but not of a codec")
        codec = _from_config(cfg, state, cfg.get("name") or Path(name).name, bandwidth)
    else:
        raise CodecError(f"unknown codec '{name}'; use encodec_24khz, encodec_48khz, mini, debug "
                         "or a codec checkpoint folder")
    return codec.to(device)
