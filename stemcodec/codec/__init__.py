"""Codecs behind one small interface: `encode(wav[B, C, S]) -> codes[B, Q, T]`, `decode`.

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

Rooms: wrapper.py (Codec: chunked encode/decode), official.py (EnCodec weights, checksums),
mini.py (our codecs: config, builder, init, training form), istft.py (the iSTFT decoder),
codebooks.py (k-means, dead codes, DDP sync), losses.py (what they train with), bundle.py
(the bundled mini codec across a change of tokens: earlier ones kept for bundled generators).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .. import checkpoint
from . import bundle
from .mini import (
    CONFIG_KEYS,
    DEBUG_CONFIG,
    DECODER_DEFAULTS,
    MINI_CONFIG,
    build_codec,
    build_encodec,
    codec_from_config,
    save_codec,
    token_hash,
)
from .official import OFFICIAL, find_official_weights, hub_checkpoints, load_official
from .wrapper import Codec, CodecError

NAMES = (*OFFICIAL, "mini", "debug")

__all__ = ["CONFIG_KEYS", "DEBUG_CONFIG", "DECODER_DEFAULTS", "MINI_CONFIG", "NAMES", "OFFICIAL",
           "Codec", "CodecError", "build_codec", "build_encodec", "find_official_weights",
           "hub_checkpoints", "load_codec", "save_codec", "token_hash"]


def load_codec(name: str = "encodec_24khz", bandwidth: float | None = None,
               repository: str | os.PathLike | None = None,
               device: torch.device | str = "cpu", codec_id: str | None = None) -> Codec:
    """Load a codec by name (see the module docstring) and move it to `device`.

    Args:
        name: encodec_24khz, encodec_48khz, mini, debug, or a codec checkpoint folder.
        bandwidth: kbps; None takes 6 for the official models, the highest otherwise.
        repository: folder with the official weights (default: the torch hub cache).
        device: where the model runs; codes come back on that device.
        codec_id: the id the caller's tokens were made with. For `mini`, when the newest
            bundled codec is not it, an earlier bundled one that is (`assets/codec-mini-<hash>`,
            kept while bundled generators are trained on its tokens) is loaded instead.
    Raises CodecError (one line) for unknown names, bad bandwidths, missing or corrupt weights.
    """
    codec = _load(name, bandwidth, repository)
    if name == "mini" and codec_id and not codec.makes(codec_id):
        codec = next((c for c in bundle.earlier(bandwidth) if c.makes(codec_id)), codec)
    return codec.to(device)


def _load(name: str, bandwidth: float | None, repository: str | os.PathLike | None) -> Codec:
    if name in OFFICIAL:
        codec = load_official(name, bandwidth, repository)
    elif name == "debug":
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(1234)
            codec = codec_from_config(DEBUG_CONFIG, None, "debug", bandwidth)
    elif name == "mini":
        path = checkpoint.bundled("codec-mini")
        if path is None:
            raise CodecError(
                "the bundled mini codec is not in this install; train it with `accelerate launch "
                "train/train_codec.py --config configs/codec-mini.yaml`, or use --codec "
                "encodec_24khz --codec-repo DIR")
        state, cfg = checkpoint.load_pretrained(path)
        codec = codec_from_config(cfg, state, "mini", bandwidth)
    elif Path(name).is_dir():
        state, cfg = checkpoint.load_pretrained(name)
        if cfg.get("type") != "encodec":
            raise CodecError(f"{name} is a checkpoint, but not of a codec")
        codec = codec_from_config(cfg, state, cfg.get("name") or Path(name).name, bandwidth,
                                  source=str(Path(name).resolve()))
    elif os.sep in str(name) or Path(name).exists():
        raise CodecError(f"codec checkpoint folder {name} does not exist (or is not a folder)")
    else:
        raise CodecError(f"unknown codec '{name}'; valid: {', '.join(NAMES)}, "
                         "or a codec checkpoint folder (model.safetensors + config.json)")
    return codec
