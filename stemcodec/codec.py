"""EnCodec behind one small interface: `encode(wav[B, C, S]) -> codes[B, Q, T]`, `decode`.

Codecs by name:
  encodec_24khz / encodec_48khz   the official models, weights from the torch hub cache or a
                                  folder (`repository`), sha256 prefix in the name verified
  mini                            our small codec bundled in stemcodec/assets/codec-mini
  debug                           a tiny random codec (fixed seed) for tests and smoke runs
  <folder>                        a codec checkpoint of ours: model.safetensors + config.json

A codec's id, `<name>-<bandwidth>kbps-<rate>hz-<first 12 hex of token_hash(weights)>`, is what
token caches and generator checkpoints record: the same id means the same tokens. The hash
covers what makes the tokens (the encoder and the codebooks), not the decoder, so a decoder
trained further (train_codec.py freeze=[encoder,quantizer]) keeps the caches and generators.
"""

from __future__ import annotations

import math
import os
import pickle
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
NAMES = (*OFFICIAL, "mini", "debug")
DOWNLOAD_ROOT = "https://dl.fbaipublicfiles.com/encodec/v0/"

# The mini layout: 24 kHz mono, hop 320 (75 frames/s), 4 codebooks of 1024 = 3 kbps, at half
# the official width (n_filters 16, dimension 64); configs/codec-mini.yaml holds the same mapping.
MINI_CONFIG: dict[str, Any] = {
    "type": "encodec", "name": "mini", "sample_rate": 24000, "channels": 1, "n_filters": 16,
    "ratios": [8, 5, 4, 2], "dimension": 64, "lstm": 1, "causal": True, "norm": "weight_norm",
    "n_q": 4, "bins": 1024, "target_bandwidths": [1.5, 3.0],
}
# The debug stand-in: the mini layout at a tiny width, random weights from a fixed seed.
DEBUG_CONFIG: dict[str, Any] = {**MINI_CONFIG, "name": "debug", "n_filters": 4, "dimension": 16,
                                "lstm": 0}


class CodecError(UserError):
    pass


class Codec:
    """An EnCodec model at one bandwidth, encoding and decoding in bounded-memory chunks.

    Long audio is cut into chunks of `chunk_seconds`; each chunk is encoded (or decoded) with
    `context_seconds` of its left neighbour (and, for a non-causal model, of its right neighbour)
    and the context frames are dropped, so a seam sees almost the same receptive field as the
    whole signal would. The number of frames is always T = ceil(S / hop_length).

    encodec_48khz was trained with `normalize=True` on 1 s segments: each segment was scaled to
    unit RMS (of its mono downmix) and the scale sent next to its codes. Our tokens carry no
    scale, so with `unit_rms=True` each item is scaled to unit RMS as a whole before encoding
    (no segments, one scale per item, computed before chunking), and decoding returns audio at
    the fixed reference level `REFERENCE_RMS` (-20 dBFS): loudness is not kept, timbre is.

    Args:
        model: the `encodec.EncodecModel`.
        name: short name (encodec_24khz, mini, debug, or a folder name).
        bandwidth: kbps; sets the number of codebooks Q.
        weights_hash: `token_hash` of the weights, part of the codec id.
        chunk_seconds: audio per chunk.
        context_seconds: context re-encoded on each side of a chunk and dropped.
        unit_rms: normalise each item to unit RMS before encoding (encodec_48khz).
    """

    REFERENCE_RMS = 0.1

    def __init__(self, model: EncodecModel, name: str, bandwidth: float, weights_hash: str,
                 chunk_seconds: float = 20.0, context_seconds: float = 1.0,
                 unit_rms: bool = False, source: str | None = None,
                 legacy_hash: str | None = None):
        self.model = model.eval()
        self.name = name
        self.source = source  # the checkpoint folder a codec of ours came from, else None
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
        # the id these weights had before ids left the decoder out (hash of every weight)
        self.legacy_id = (f"{name}-{self.bandwidth:g}kbps-{self.sample_rate}hz-"
                          f"{legacy_hash[:12]}") if legacy_hash else None
        self.chunk_frames = max(1, int(chunk_seconds * self.frame_rate))
        self.context_frames = int(context_seconds * self.frame_rate)
        self.causal = any(getattr(m, "causal", False) for m in model.encoder.modules())
        self.unit_rms = unit_rms

    def makes(self, codec_id: str | None) -> bool:
        """Whether tokens recorded under `codec_id` are this codec's: its id, or the id the
        same weights had before ids covered only the token-making weights."""
        return codec_id is not None and codec_id in (self.codec_id, self.legacy_id)

    def info(self) -> dict[str, Any]:
        """What a manifest or a generator checkpoint records to find and check this codec."""
        info = {"id": self.codec_id, "name": self.name, "sample_rate": self.sample_rate,
                "frame_rate": self.frame_rate, "num_codebooks": self.num_codebooks,
                "cardinality": self.cardinality, "channels": self.channels,
                "bandwidth": self.bandwidth, "hop_length": self.hop_length}
        if self.source is not None:
            info["source"] = self.source
        return info

    def to(self, device: torch.device | str) -> Codec:
        self.model.to(device)
        return self

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _chunks(self, total: int):
        """(first, last, left, right) frame spans: the chunk [first, last) and its context."""
        for first in range(0, total, self.chunk_frames):
            last = min(first + self.chunk_frames, total)
            left = min(self.context_frames, first)
            right = 0 if self.causal else min(self.context_frames, total - last)
            yield first, last, left, right

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, sample_rate: int | None = None) -> torch.Tensor:
        """wav [B, C, S] at `sample_rate` -> codes [B, Q, T] int64 on the codec's device,
        T = ceil(S / hop_length). Wrong channels (or a `sample_rate` given and wrong): ValueError."""
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise ValueError(f"expected wav [B, {self.channels}, S], got {tuple(wav.shape)}")
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise ValueError(f"{self.name} expects {self.sample_rate} Hz audio, got {sample_rate} Hz")
        wav = wav.to(self.device, torch.float32)
        if self.unit_rms:  # as EncodecModel._encode_frame does per segment, here per item
            volume = wav.mean(dim=1, keepdim=True).pow(2).mean(dim=2, keepdim=True).sqrt()
            wav = wav / (volume + 1e-8)
        total = math.ceil(wav.shape[-1] / self.hop_length)
        pieces = [torch.zeros(wav.shape[0], self.num_codebooks, 0, dtype=torch.long,
                              device=self.device)]
        hop = self.hop_length
        for first, last, left, right in self._chunks(total):
            x = wav[..., (first - left) * hop: (last + right) * hop]  # [B, C, s]
            emb = self.model.encoder(x)  # [B, D, t]
            codes = self.model.quantizer.encode(emb, self.frame_rate, self.bandwidth)  # [Q, B, t]
            pieces.append(codes.transpose(0, 1)[..., left: left + last - first].long())
        return torch.cat(pieces, dim=-1)  # [B, Q, T]

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """codes [B, Q, T] -> wav [B, C, T * hop_length], or [B, C, length] when the original
        length S is given (the last frame's padding cut off; zeros added if S is longer).
        Q may be fewer codebooks than the model has (a lower bandwidth)."""
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.model.quantizer.n_q:
            raise ValueError(f"expected codes [B, Q<={self.model.quantizer.n_q}, T], "
                             f"got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.cardinality):
            raise ValueError(f"codes must lie in [0, {self.cardinality}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        codes = codes.to(self.device, torch.long)
        hop = self.hop_length
        pieces = [torch.zeros(codes.shape[0], self.channels, 0, device=self.device)]
        for first, last, left, right in self._chunks(codes.shape[-1]):
            emb = self.model.quantizer.decode(codes[..., first - left: last + right].transpose(0, 1))
            out = self.model.decoder(emb)  # [B, C, s]
            pieces.append(out[..., left * hop: (left + last - first) * hop])
        wav = torch.cat(pieces, dim=-1)  # [B, C, T * hop]
        if length is not None:
            wav = wav[..., :length] if length <= wav.shape[-1] else \
                torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))
        return wav * self.REFERENCE_RMS if self.unit_rms else wav


# -- building and saving our own codecs -------------------------------------------------------
CONFIG_KEYS = ("sample_rate", "channels", "n_filters", "ratios", "dimension", "lstm", "causal",
               "norm", "n_q", "bins", "target_bandwidths")


def build_encodec(cfg: dict[str, Any]) -> EncodecModel:
    """An EncodecModel from the package's blocks, sized by `cfg` (keys: CONFIG_KEYS, see
    MINI_CONFIG). Codebooks start random (no k-means on first batch) so a fresh model encodes."""
    missing = [key for key in CONFIG_KEYS if key not in cfg]
    if missing:
        raise CodecError(f"codec config lacks key(s) {', '.join(missing)} "
                         f"(needs {', '.join(CONFIG_KEYS)})")
    common = dict(channels=cfg["channels"], dimension=cfg["dimension"],
                  n_filters=cfg["n_filters"], ratios=list(cfg["ratios"]), lstm=cfg["lstm"],
                  causal=cfg["causal"], norm=cfg["norm"])
    encoder, decoder = SEANetEncoder(**common), SEANetDecoder(**common)
    quantizer = ResidualVectorQuantizer(dimension=cfg["dimension"], n_q=cfg["n_q"],
                                        bins=cfg["bins"], kmeans_init=False)
    return EncodecModel(encoder, decoder, quantizer, [float(b) for b in cfg["target_bandwidths"]],
                        cfg["sample_rate"], cfg["channels"], normalize=False,
                        name=cfg.get("name", "unset"))


def token_hash(state: dict[str, torch.Tensor]) -> str:
    """state_hash of the weights that decide the tokens: the encoder's and the codebook
    vectors (not the decoder, not the codebooks' EMA statistics)."""
    return state_hash({k: v for k, v in state.items()
                       if k.startswith("encoder.") or k.endswith("_codebook.embed")})


def save_codec(model: EncodecModel, cfg: dict[str, Any], directory: str | os.PathLike) -> Path:
    """Write a codec checkpoint folder (model.safetensors + config.json) that load_codec reads."""
    return save_pretrained(directory, model.state_dict(), {**cfg, "type": "encodec"})


def _from_config(cfg: dict[str, Any], state: dict[str, torch.Tensor] | None, name: str,
                 bandwidth: float | None, source: str | None = None) -> Codec:
    bandwidths = [float(b) for b in cfg.get("target_bandwidths", [])]
    bandwidth = bandwidths[-1] if bandwidth is None and bandwidths else bandwidth
    _check_bandwidth(name, bandwidth, bandwidths)
    model = build_encodec(cfg)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CodecError(f"codec {name}: weights do not fit its config.json "
                             f"({str(exc).splitlines()[0][:160]})") from None
    state = model.state_dict()
    return Codec(model, name, bandwidth, token_hash(state), source=source,
                 legacy_hash=state_hash(state))


def _check_bandwidth(name: str, bandwidth: float | None, valid: list[float]) -> None:
    try:
        ok = float(bandwidth) in [float(b) for b in valid]  # type: ignore[arg-type]
        shown = f"{float(bandwidth):g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ok, shown = False, str(bandwidth)
    if not ok:
        raise CodecError(f"{name} has no bandwidth {shown} kbps; "
                         f"valid: {', '.join(f'{b:g}' for b in valid)}")


# -- the official models --------------------------------------------------------------------
def hub_checkpoints() -> Path:
    """Where torch.hub (and so `encodec`) keeps downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_official_weights(name: str, repository: str | os.PathLike | None = None) -> Path:
    """The weights file of an official model in `repository` (else the torch hub cache): its
    official name, or any `<name>-<hex>.th` (8+ hex digits) whose sha256 starts with `<hex>`.
    The checksum is verified here, before anything unpickles the file."""
    expected = OFFICIAL[name]["file"]
    folder = Path(repository) if repository is not None else hub_checkpoints()
    if repository is not None and not folder.is_dir():
        raise CodecError(f"--codec-repo {folder} is not a folder (it should hold {expected})")
    candidates = [folder / expected] + sorted(set(folder.glob(f"{name}-*.th")) - {folder / expected})
    for path in candidates:
        match = re.fullmatch(rf"{name}-([0-9a-f]{{8,64}})\.th", path.name)
        if not match or not path.is_file():
            continue
        checksum = match.group(1)
        actual = file_sha256(path)[: len(checksum)]
        if actual != checksum:
            raise CodecError(f"{path}: checksum mismatch (expected {checksum} from the name, "
                             f"got {actual}); the file is corrupt or not {name}: download it again")
        return path
    raise CodecError(f"missing EnCodec weights {expected} (looked in {folder}); download "
                     f"{DOWNLOAD_ROOT}{expected} into {hub_checkpoints()} or into a folder "
                     "given with --codec-repo DIR")


def _official_model(name: str) -> EncodecModel:
    """The architecture of `EncodecModel.encodec_model_{24,48}khz(pretrained=False)`, unnamed
    segments: an official state dict fits it exactly."""
    bandwidths = OFFICIAL[name]["bandwidths"]
    if name == "encodec_24khz":
        return EncodecModel._get_model(bandwidths, 24000, 1, causal=True, model_norm="weight_norm",
                                       audio_normalize=False, name=name)
    # trained with normalize=True, segment=1 s; Codec(unit_rms=True) stands in (see Codec)
    return EncodecModel._get_model(bandwidths, 48000, 2, causal=False,
                                   model_norm="time_group_norm", audio_normalize=True,
                                   segment=None, name=name)


def _official(name: str, bandwidth: float | None, repository) -> Codec:
    spec = OFFICIAL[name]
    bandwidth = spec["default"] if bandwidth is None else bandwidth
    _check_bandwidth(name, bandwidth, spec["bandwidths"])
    path = find_official_weights(name, repository)
    model = _official_model(name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not a state dict")
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CodecError(f"{path} is not a usable {name} state dict ({reason})") from None
    state = model.state_dict()
    return Codec(model, name, bandwidth, token_hash(state), unit_rms=(name == "encodec_48khz"),
                 legacy_hash=state_hash(state))


def load_codec(name: str = "encodec_24khz", bandwidth: float | None = None,
               repository: str | os.PathLike | None = None,
               device: torch.device | str = "cpu") -> Codec:
    """Load a codec by name (see the module docstring) and move it to `device`.

    Args:
        name: encodec_24khz, encodec_48khz, mini, debug, or a codec checkpoint folder.
        bandwidth: kbps; None takes 6 for the official models, the highest otherwise.
        repository: folder with the official weights (default: the torch hub cache).
        device: where the model runs; codes come back on that device.
    Raises CodecError (one line) for unknown names, bad bandwidths, missing or corrupt weights.
    """
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
        codec = _from_config(cfg, state, cfg.get("name") or Path(name).name, bandwidth,
                             source=str(Path(name).resolve()))
    elif os.sep in str(name) or Path(name).exists():
        raise CodecError(f"codec checkpoint folder {name} does not exist (or is not a folder)")
    else:
        raise CodecError(f"unknown codec '{name}'; valid: {', '.join(NAMES)}, "
                         "or a codec checkpoint folder (model.safetensors + config.json)")
    return codec.to(device)
