"""The `Codec` wrapper: one EnCodec-style model at one bandwidth behind
`encode(wav[B, C, S]) -> codes[B, Q, T]` and `decode(codes) -> wav`, in bounded-memory chunks.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import torch
from encodec import EncodecModel

from ..errors import UserError

if TYPE_CHECKING:
    from .stream import DecodeStream


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
        # frames of right context the decoder needs at a chunk's end: none for a causal SEANet,
        # the overlap of its inverse STFT for an iSTFT head, the whole context otherwise
        lookahead = getattr(model.decoder, "lookahead_frames", None)
        decoder_causal = any(getattr(m, "causal", False) for m in model.decoder.modules())
        self.decode_lookahead = (int(lookahead) if lookahead is not None
                                 else 0 if decoder_causal else self.context_frames)
        self.decoder_offset = (getattr(model.decoder, "phase", None) in ("reference", "accumulated")
                               or getattr(model.decoder, "gate", None) is not None)
        # an accumulated-phase decoder carries its running phase from chunk to chunk
        self.decoder_state = bool(getattr(model.decoder, "accumulates", False))
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

    def _chunks(self, total: int, right_context: int):
        """(first, last, left, right) frame spans: the chunk [first, last) and its context."""
        for first in range(0, total, self.chunk_frames):
            last = min(first + self.chunk_frames, total)
            left = min(self.context_frames, first)
            right = min(right_context, total - last)
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
        for first, last, left, right in self._chunks(total, 0 if self.causal
                                                     else self.context_frames):
            x = wav[..., (first - left) * hop: (last + right) * hop]  # [B, C, s]
            pieces.append(self.encode_chunk(x, left, last - first))
        return torch.cat(pieces, dim=-1)  # [B, Q, T]

    @torch.inference_mode()
    def encode_chunk(self, x: torch.Tensor, left: int, frames: int) -> torch.Tensor:
        """codes [B, Q, frames] of one chunk: `x` [B, C, s] holds `left` frames of context,
        the chunk's `frames`, then any right context. What `encode` runs per chunk, and a
        caller that encodes as the audio comes (stemcodec.blocks.encode) per block."""
        emb = self.model.encoder(x)  # [B, D, t]
        codes = self.model.quantizer.encode(emb, self.frame_rate, self.bandwidth)  # [Q, B, t]
        return codes.transpose(0, 1)[..., left: left + frames].long()

    def check_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, Q, T] as int64 on the codec's device; ValueError for a wrong shape or ids
        outside the codebooks. Q may be fewer codebooks than the model has (a lower bandwidth)."""
        if codes.dim() != 3 or not 1 <= codes.shape[1] <= self.model.quantizer.n_q:
            raise ValueError(f"expected codes [B, Q<={self.model.quantizer.n_q}, T], "
                             f"got {tuple(codes.shape)}")
        if codes.numel() and (codes.min() < 0 or codes.max() >= self.cardinality):
            raise ValueError(f"codes must lie in [0, {self.cardinality}), got "
                             f"[{int(codes.min())}, {int(codes.max())}]")
        return codes.to(self.device, torch.long)

    def decode_chunk(self, codes: torch.Tensor, first: int, last: int, left: int,
                     before: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The frames [first, last) of a longer sequence, from `codes` [B, Q, left + (last -
        first) + right]: the chunk with `left` frames of context before it and any right
        context after it. Returns (wav [B, C, (last - first) * hop_length], the running phase
        sum at frame last - 1 for the next chunk, or None); `before` is the previous chunk's.
        What `decode` runs per chunk and a `stream` per block; no REFERENCE_RMS scaling."""
        emb = self.model.quantizer.decode(codes.transpose(0, 1))
        # an iSTFT decoder's phase reference counts frames from the start of the codes
        if self.decoder_state:
            out = self.model.decoder(emb, first - left, (left, before))
            before = self.model.decoder.running[..., left + last - first - 1]
        elif self.decoder_offset:
            out = self.model.decoder(emb, first - left)
        else:
            out = self.model.decoder(emb)  # [B, C, s]
        hop = self.hop_length
        return out[..., left * hop: (left + last - first) * hop], before

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, length: int | None = None) -> torch.Tensor:
        """codes [B, Q, T] -> wav [B, C, T * hop_length], or [B, C, length] when the original
        length S is given (the last frame's padding cut off; zeros added if S is longer).
        Q may be fewer codebooks than the model has (a lower bandwidth)."""
        codes = self.check_codes(codes)
        pieces = [torch.zeros(codes.shape[0], self.channels, 0, device=self.device)]
        before = None  # an accumulated phase: the running sum just before the chunk
        for first, last, left, right in self._chunks(codes.shape[-1], self.decode_lookahead):
            wav, before = self.decode_chunk(codes[..., first - left: last + right], first, last,
                                            left, before)
            pieces.append(wav)
        wav = torch.cat(pieces, dim=-1)  # [B, C, T * hop]
        if length is not None:
            wav = wav[..., :length] if length <= wav.shape[-1] else \
                torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))
        return wav * self.REFERENCE_RMS if self.unit_rms else wav

    def stream(self, block_frames: int | None = None) -> DecodeStream:
        """A decoder of codes as they arrive: `push(codes[B, Q, t])` returns the audio of the
        frames that are final so far, `flush()` the rest; together they are `decode` of the
        whole sequence (to float rounding), however the codes were pushed. Audio comes in
        blocks of `block_frames` (default: the decode chunk); see stream.py."""
        from .stream import DecodeStream
        return DecodeStream(self, self.chunk_frames if block_frames is None else block_frames)
