"""Our own codecs: EnCodec's SEANet encoder and residual quantizer with either SEANet's
decoder or an iSTFT decoder (istft.py), sized by a config mapping; saving, the token hash,
initialisation, and the model in its training form.

A codec config (config.json of a codec folder, `model:` of configs/codec-*.yaml) holds
CONFIG_KEYS, and optionally the DECODER_DEFAULTS keys (absent in codecs saved before the iSTFT
decoder existed: those are SEANet decoders).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

# encodec 0.1.1 builds weight norm the old way; the warning is not ours to act on
warnings.filterwarnings("ignore", message=".*weight_norm.*is deprecated", category=FutureWarning)

from encodec import EncodecModel  # noqa: E402
from encodec.modules import SEANetDecoder, SEANetEncoder  # noqa: E402
from encodec.quantization import ResidualVectorQuantizer  # noqa: E402

from ..checkpoint import save_pretrained, state_hash  # noqa: E402
from .istft import ISTFTDecoder  # noqa: E402
from .spectral import SpectralEncoder  # noqa: E402
from .wrapper import Codec, CodecError  # noqa: E402

CONFIG_KEYS = ("sample_rate", "channels", "n_filters", "ratios", "dimension", "lstm", "causal",
               "norm", "n_q", "bins", "target_bandwidths")
# decoder: seanet (EnCodec's, transposed convolutions) or istft (ConvNeXt + inverse STFT);
# the decoder_* keys and n_fft size the istft decoder (n_fft null: 4 x hop); decoder_phase:
# absolute (Vocos) or reference (added to a steady tone's phase advance, see istft.py);
# decoder_noise: a gated pseudo-random phase for noise-like bins (istft.py); accumulated: a
# running sum of predicted frequencies (istft.py). encoder: seanet (EnCodec's) or spectral (an
# STFT and ConvNeXt blocks at the frame rate, spectral.py), sized by encoder_dim/_layers.
# These keys came after the first codecs: a config without them is SEANet on both sides.
DECODER_DEFAULTS: dict[str, Any] = {"decoder": "seanet", "decoder_dim": 256, "decoder_layers": 8,
                                    "decoder_kernel": 7, "n_fft": None,
                                    "decoder_phase": "absolute", "decoder_noise": False,
                                    "encoder": "seanet", "encoder_dim": 256, "encoder_layers": 8}
DECODERS = ("seanet", "istft")
ENCODERS = ("seanet", "spectral")

# The mini layout (the second design, docs/codec.md): 24 kHz mono, hop 320 (75 frames/s),
# 4 codebooks of 1024 = 3 kbps of 64-dim encodings, a spectral encoder and an iSTFT decoder
# with an accumulated phase and a noise gate; configs/codec-mini.yaml holds the same mapping.
# (n_filters and lstm size the SEANet encoder, used when `encoder: seanet`.)
MINI_CONFIG: dict[str, Any] = {
    "type": "encodec", "name": "mini", "sample_rate": 24000, "channels": 1, "n_filters": 16,
    "ratios": [8, 5, 4, 2], "dimension": 64, "lstm": 1, "causal": True, "norm": "weight_norm",
    "n_q": 4, "bins": 1024, "target_bandwidths": [1.5, 3.0],
    **DECODER_DEFAULTS, "decoder": "istft", "decoder_phase": "accumulated", "decoder_noise": True,
    "encoder": "spectral",
}
# The debug stand-in: a tiny SEANet codec, random weights from a fixed seed (its tokens, and so
# the caches and checkpoints of tests, do not change with the mini layout).
DEBUG_CONFIG: dict[str, Any] = {**MINI_CONFIG, "name": "debug", "n_filters": 4, "dimension": 16,
                                "lstm": 0, "decoder": "seanet", "decoder_phase": "absolute",
                                "decoder_noise": False, "encoder": "seanet"}


def build_codec(cfg: dict[str, Any]) -> EncodecModel:
    """An EncodecModel from the package's blocks (and our iSTFT decoder), sized by `cfg`.
    Codebooks start random (no k-means on first batch) so a fresh model encodes."""
    missing = [key for key in CONFIG_KEYS if key not in cfg]
    if missing:
        raise CodecError(f"codec config lacks key(s) {', '.join(missing)} "
                         f"(needs {', '.join(CONFIG_KEYS)})")
    cfg = {**DECODER_DEFAULTS, **cfg}
    if cfg["decoder"] not in DECODERS:
        raise CodecError(f"codec config: decoder '{cfg['decoder']}' unknown; valid: "
                         f"{', '.join(DECODERS)}")
    if cfg["encoder"] not in ENCODERS:
        raise CodecError(f"codec config: encoder '{cfg['encoder']}' unknown; valid: "
                         f"{', '.join(ENCODERS)}")
    common = dict(channels=cfg["channels"], dimension=cfg["dimension"],
                  n_filters=cfg["n_filters"], ratios=list(cfg["ratios"]), lstm=cfg["lstm"],
                  causal=cfg["causal"], norm=cfg["norm"])
    if cfg["encoder"] == "spectral":
        if cfg["channels"] != 1:
            raise CodecError("codec config: the spectral encoder is mono; use channels 1")
        encoder = SpectralEncoder(cfg["dimension"], cfg["ratios"], cfg["n_fft"],
                                  cfg["encoder_dim"], cfg["encoder_layers"], cfg["decoder_kernel"])
    else:
        encoder = SEANetEncoder(**common)
    if cfg["decoder"] == "istft":
        if cfg["channels"] != 1:
            raise CodecError("codec config: the istft decoder is mono; use channels 1")
        decoder = ISTFTDecoder(cfg["dimension"], math.prod(cfg["ratios"]), cfg["n_fft"],
                               cfg["decoder_dim"], cfg["decoder_layers"], cfg["decoder_kernel"],
                               phase=cfg["decoder_phase"], noise=cfg["decoder_noise"])
    else:
        decoder = SEANetDecoder(**common)
    quantizer = ResidualVectorQuantizer(dimension=cfg["dimension"], n_q=cfg["n_q"],
                                        bins=cfg["bins"], kmeans_init=False)
    return EncodecModel(encoder, decoder, quantizer, [float(b) for b in cfg["target_bandwidths"]],
                        cfg["sample_rate"], cfg["channels"], normalize=False,
                        name=cfg.get("name", "unset"))


build_encodec = build_codec  # the name before the iSTFT decoder


def token_hash(state: dict[str, torch.Tensor]) -> str:
    """state_hash of the weights that decide the tokens: the encoder's and the codebook
    vectors (not the decoder, not the codebooks' EMA statistics)."""
    return state_hash({k: v for k, v in state.items()
                       if k.startswith("encoder.") or k.endswith("_codebook.embed")})


def save_codec(model: EncodecModel, cfg: dict[str, Any], directory: str | os.PathLike) -> Path:
    """Write a codec checkpoint folder (model.safetensors + config.json) that load_codec reads."""
    return save_pretrained(directory, model.state_dict(), {**cfg, "type": "encodec"})


def check_bandwidth(name: str, bandwidth: float | None, valid: list[float]) -> None:
    try:
        ok = float(bandwidth) in [float(b) for b in valid]  # type: ignore[arg-type]
        shown = f"{float(bandwidth):g}"  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ok, shown = False, str(bandwidth)
    if not ok:
        raise CodecError(f"{name} has no bandwidth {shown} kbps; "
                         f"valid: {', '.join(f'{b:g}' for b in valid)}")


def codec_from_config(cfg: dict[str, Any], state: dict[str, torch.Tensor] | None, name: str,
                      bandwidth: float | None, source: str | None = None) -> Codec:
    """A Codec of ours from its config and weights (None: as built)."""
    bandwidths = [float(b) for b in cfg.get("target_bandwidths", [])]
    bandwidth = bandwidths[-1] if bandwidth is None and bandwidths else bandwidth
    check_bandwidth(name, bandwidth, bandwidths)
    model = build_codec(cfg)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise CodecError(f"codec {name}: weights do not fit its config.json "
                             f"({str(exc).splitlines()[0][:160]})") from None
    state = model.state_dict()
    return Codec(model, name, bandwidth, token_hash(state), source=source,
                 legacy_hash=state_hash(state))


@torch.no_grad()
def preserving_init(codec: nn.Module, gain: float = 1.0) -> None:
    """Every convolution drawn from N(0, gain^2 / fan_in), fan_in counted per output sample
    (in_channels * kernel, divided by the stride for a transposed convolution), biases zero.
    PyTorch's default draws Var = 1 / (3 fan_in) (fan_in of the *output* channels for a
    transposed conv), which shrinks the signal 3x or more per layer: through SEANet's ~12
    layers the decoded audio at init hardly depends on the input, and training sits for
    thousands of steps on "the average spectrum". Weight norm is kept: g = |v| per channel.
    The iSTFT decoder's residual blocks keep their scale by construction and are left alone."""
    skip = {id(m) for d in codec.modules() if isinstance(d, ISTFTDecoder) for m in d.modules()}
    for module in codec.modules():
        if id(module) in skip or not isinstance(module, (nn.Conv1d, nn.ConvTranspose1d)):
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


PARTS = ("encoder", "quantizer", "decoder")


class CodecModule(nn.Module):
    """The EncodecModel in its training form: audio -> (decoded audio, commitment penalty,
    encodings). One forward per step, so accelerate (DDP) can wrap it. Frozen parts (some of
    PARTS) get no gradient and stay in eval mode, so a frozen quantizer's EMA does not move."""

    def __init__(self, codec: nn.Module, freeze: Sequence[str] = ()):
        super().__init__()
        self.codec = codec
        self.frozen = set(freeze)
        self.frame_rate = codec.sample_rate / math.prod(codec.encoder.ratios)
        for layer in codec.quantizer.vq.layers:  # dead codes are ours (codebooks.py)
            layer._codebook.threshold_ema_dead_code = 0
        for part in self.frozen:
            getattr(codec, part).requires_grad_(False)

    def train(self, mode: bool = True) -> CodecModule:
        super().train(mode)
        for part in self.frozen:
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
