"""MultiStreamTransformer: one token stream per instrument slot, attention across the slots.

Reading order: RMSNorm, rotary embedding, TimeAttention (causal, within a slot),
SlotAttention (across slots at the same frame), MLP, Block, KVCache, MultiStreamTransformer.
Cost per layer grows as K*T^2 + T*K^2, never (K*T)^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from ..checkpoint import load_pretrained, save_pretrained
from ..config import from_dict, to_dict
from .config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norm = x.float().pow(2).mean(-1, keepdim=True).add(self.eps).rsqrt()
        return (x.float() * norm).type_as(x) * self.weight


def rotary(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape [T, head_dim/2] for the given absolute positions."""
    freqs = theta ** (-torch.arange(0, head_dim, 2, device=positions.device).float() / head_dim)
    angles = positions.float()[:, None] * freqs[None, :]
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x1, x2) of the last dim; x: [N, H, T, D], cos/sin: [T, D/2]."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.type_as(x)


@dataclass
class KVCache:
    """Preallocated keys/values of the time attention: [layers, B*K, heads, max_frames, head_dim]."""

    keys: torch.Tensor
    values: torch.Tensor

    @property
    def max_frames(self) -> int:
        return self.keys.shape[3]


class TimeAttention(nn.Module):
    """Causal self-attention over time within each slot, with RoPE and an optional KV cache."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads = cfg.num_heads
        self.head_dim = cfg.dim // cfg.num_heads
        self.theta = cfg.rope_theta
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, start: int = 0, cache: KVCache | None = None,
                layer: int = 0) -> torch.Tensor:
        # x: (N, T, C) with N = B*K streams
        N, T, _ = x.shape
        q, k, v = rearrange(self.qkv(x), "n t (three h d) -> three n h t d",
                            three=3, h=self.heads)  # (N, h, T, d) each
        cos, sin = rotary(torch.arange(start, start + T, device=x.device), self.head_dim,
                          self.theta)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is None:
            out = F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=self.dropout if self.training else 0.0)
        else:
            cache.keys[layer, :, :, start:start + T] = k.to(cache.keys.dtype)
            cache.values[layer, :, :, start:start + T] = v.to(cache.values.dtype)
            keys = cache.keys[layer, :, :, : start + T].to(q.dtype)
            values = cache.values[layer, :, :, : start + T].to(q.dtype)
            # query i sits at absolute position start+i and sees keys 0..start+i
            mask = torch.ones(T, start + T, dtype=torch.bool, device=x.device).tril(start)
            out = F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)
        return self.proj(rearrange(out, "n h t d -> n t (h d)"))


class SlotAttention(nn.Module):
    """Attention across the slots at the same frame: no mask in time, absent slots hidden.

    No slot position embedding: the layer is permutation-equivariant over slots, so a slot's
    identity comes only from its instrument embedding.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        # x: (B, K, T, C); present: (B, K)
        B, K, T, _ = x.shape
        q, k, v = rearrange(self.qkv(x), "b k t (three h d) -> three (b t) h k d",
                            three=3, h=self.heads)  # ((B T), h, K, d)
        present = present | ~present.any(dim=1, keepdim=True)  # an empty item attends to all
        keep = present[:, None, None, None, :].expand(B, T, 1, 1, K).reshape(B * T, 1, 1, K)
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(rearrange(out, "(b t) h k d -> b k t (h d)", b=B))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.fc = nn.Linear(cfg.dim, hidden, bias=False)
        self.proj = nn.Linear(hidden, cfg.dim, bias=False)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm: time attention within each slot -> attention across slots -> MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.norm_time = RMSNorm(cfg.dim)
        self.time = TimeAttention(cfg)
        self.slot = None
        if cfg.slot_attention and cfg.mode == "stems":
            self.norm_slot = RMSNorm(cfg.dim)
            self.slot = SlotAttention(cfg)
        self.norm_mlp = RMSNorm(cfg.dim)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, present: torch.Tensor, start: int = 0,
                cache: KVCache | None = None, layer: int = 0) -> torch.Tensor:
        # x: (B, K, T, C)
        B = x.shape[0]
        h = rearrange(self.norm_time(x), "b k t c -> (b k) t c")
        x = x + rearrange(self.time(h, start, cache, layer), "(b k) t c -> b k t c", b=B)
        if self.slot is not None:
            x = x + self.slot(self.norm_slot(x), present)
        return x + self.mlp(self.norm_mlp(x))


class MultiStreamTransformer(nn.Module):
    """Token streams `seq[B, K, Q, T]` (delay pattern applied) -> logits `[B, K, Q, T, card]`.

    Logits at position t predict the token at position t+1 of the same delayed sequence.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.codec_info: dict = {}
        cfg = config
        if cfg.dim % cfg.num_heads or (cfg.dim // cfg.num_heads) % 2:
            raise ValueError("model.dim must split into num_heads heads of even size")
        self.tokens = nn.ModuleList(
            nn.Embedding(cfg.cardinality + 1, cfg.dim) for _ in range(cfg.num_codebooks))
        self.instrument = nn.Embedding(len(cfg.instruments), cfg.dim)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.norm = RMSNorm(cfg.dim)
        self.heads = nn.ModuleList(
            nn.Linear(cfg.dim, cfg.cardinality, bias=False) for _ in range(cfg.num_codebooks))
        self.apply(self._init)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(3 * cfg.num_layers))

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    @property
    def special(self) -> int:
        """Token id of "no token here" (start column and delay padding)."""
        return self.config.cardinality

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def forward(self, seq: torch.Tensor, instrument: torch.Tensor,
                present: torch.Tensor | None = None, cache: KVCache | None = None,
                start: int = 0) -> torch.Tensor:
        """Args:
            seq: [B, K, Q, T] token ids (special = cardinality allowed).
            instrument: [B, K] instrument ids into the model's vocabulary.
            present: [B, K] bool; absent slots are never attended to (default: all present).
            cache: a KVCache from `new_cache`; then `seq` holds positions [start, start+T).
        Returns: logits [B, K, Q, T, cardinality].
        """
        B, K, Q, T = seq.shape
        if Q != self.config.num_codebooks:
            raise ValueError(f"expected {self.config.num_codebooks} codebooks, got {Q}")
        if present is None:
            present = torch.ones(B, K, dtype=torch.bool, device=seq.device)
        x = sum(self.tokens[q](seq[:, :, q]) for q in range(Q))  # (B, K, T, C)
        x = x + self.instrument(instrument)[:, :, None, :]
        for i, block in enumerate(self.blocks):
            x = block(x, present, start, cache, i)
        x = self.norm(x)
        return torch.stack([head(x) for head in self.heads], dim=2)  # (B, K, Q, T, card)

    def new_cache(self, batch: int, slots: int, max_frames: int | None = None,
                  device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> KVCache:
        """A static cache for `batch` x `slots` streams of up to `max_frames` positions."""
        cfg = self.config
        param = next(self.parameters())
        shape = (cfg.num_layers, batch * slots, cfg.num_heads, max_frames or cfg.max_frames,
                 cfg.dim // cfg.num_heads)
        device, dtype = device or param.device, dtype or param.dtype
        return KVCache(torch.zeros(shape, device=device, dtype=dtype),
                       torch.zeros(shape, device=device, dtype=dtype))

    def loss(self, logits: torch.Tensor, targets: torch.Tensor,
             mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy where `mask` is true: (mean over all, mean per codebook [Q])."""
        card = logits.shape[-1]
        ce = F.cross_entropy(logits.float().flatten(0, -2),
                             targets.clamp(0, card - 1).flatten(), reduction="none")
        ce = ce.view_as(targets) * mask
        count = mask.sum(dim=(0, 1, 3)).clamp_min(1)  # per codebook
        per_q = ce.sum(dim=(0, 1, 3)) / count
        total = ce.sum() / mask.sum().clamp_min(1)
        return total, per_q

    # -- checkpoints -------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path) -> Path:
        return save_pretrained(directory, self.state_dict(),
                               {**to_dict(self.config), "codec": self.codec_info})

    @classmethod
    def from_pretrained(cls, directory: str | Path,
                        device: torch.device | str = "cpu") -> MultiStreamTransformer:
        """Load a model folder (model.safetensors + config.json); no training code needed."""
        state, cfg = load_pretrained(directory)
        codec = cfg.pop("codec", {}) or {}
        model = cls(from_dict(ModelConfig, cfg))
        model.load_state_dict(state)
        model.codec_info = codec
        return model.to(device).eval()
