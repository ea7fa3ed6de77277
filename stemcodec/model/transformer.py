"""MultiStreamTransformer: one causal stream per instrument slot, slots talking at each frame.

Reading order (as nanoGPT): RMSNorm, rotary helpers, TimeAttention, SlotAttention, MLP, Block,
KVCache, MultiStreamTransformer. Activations are `x[B, K, T, D]` (batch, slots, positions of the
delayed sequence, width) between blocks; each attention folds one of K or T into the batch:

    TimeAttention   (b k) h t d   causal over time within a slot, RoPE, KV cache
    SlotAttention   (b t) h k d   across slots at one position, absent slots masked as keys

so the cost grows as K*T^2 + T*K^2, not (K*T)^2. Slots carry no position embedding: the model
is permutation-equivariant over slots and a slot's identity is its instrument embedding.
Logits at position t predict the tokens at position t + 1 (GPT convention), and the state of
every slot at position t depends only on tokens at positions <= t of any slot, so no slot
sees another slot's future.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..checkpoint import load_pretrained, save_pretrained
from ..config import from_dict, to_dict
from .config import ModelConfig
from .objects import InstrumentObjects, Objects


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # normalise in float32 so bf16/fp16 training keeps a stable scale
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return xf.to(x.dtype) * self.weight


# -- rotary position embedding (over time only; slots have no order) ------------------------
def rotary_angles(positions: torch.Tensor,
                  inv_freq: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Absolute positions [T] -> (cos, sin), each [T, head_dim], the two halves sharing a frequency.

    Computed from the absolute position, so a chunk at `start` rotates exactly as it would inside
    the full sequence: what makes cached and full forwards agree.
    """
    angles = positions.float()[:, None] * inv_freq[None, :]  # (T, hd/2)
    angles = torch.cat([angles, angles], dim=-1)  # (T, hd)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x [..., T, hd] by the angles of its positions (rotate-half convention)."""
    x1, x2 = x.chunk(2, dim=-1)
    rotated = torch.cat([-x2, x1], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


# forwards with a KV cache and at most this many (batch, slot, position) rows run on one CPU
# thread: generation steps, not prompts
SMALL_STEP_ROWS = 64


@contextmanager
def at_most_threads(n: int | None) -> Iterator[None]:
    """Run the block with at most `n` torch CPU threads (None: as set), then restore."""
    before = torch.get_num_threads()
    if n is None or n >= before:
        yield
        return
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# -- attention ------------------------------------------------------------------------------
class TimeAttention(nn.Module):
    """Causal self-attention over time within each slot, with RoPE and an optional KV cache."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.heads = cfg.num_heads
        self.qkv = nn.Linear(cfg.dim, 3 * cfg.dim, bias=False)
        self.proj = nn.Linear(cfg.dim, cfg.dim, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                start: int = 0) -> torch.Tensor:
        """x [B, K, T, D] at positions [start, start + T) -> [B, K, T, D].

        Args:
            cos, sin: [T, head_dim] from `rotary_angles` of those positions.
            cache: this layer's (keys, values), each [B*K, heads, max_frames, head_dim]; the
                chunk's keys and values are written at [start, start + T) first.
            start: absolute position of the chunk's first frame.
        """
        B, K, T, D = x.shape
        H = self.heads
        # b k t (three h d) -> three (b k) h t d: a view (at one position, einops' own overhead
        # outweighs the arithmetic)
        qkv = self.qkv(x).view(B * K, T, 3, H, D // H).permute(2, 0, 3, 1, 4)
        qk = apply_rotary(qkv[:2], cos, sin)  # q and k in one go: (2, (B K), H, T, hd)
        q, k, v = qk[0], qk[1], qkv[2]  # each ((B K), H, T, hd)
        if cache is not None:
            # static cache: write this chunk at [start, start+T), read back everything up to it
            cache_k, cache_v = cache  # ((B K), H, F, hd)
            cache_k[:, :, start:start + T] = k
            cache_v[:, :, start:start + T] = v
            k, v = cache_k[:, :, :start + T], cache_v[:, :, :start + T]  # ((B K), H, start+T, hd)
            if k.dtype != q.dtype:
                k, v = k.to(q.dtype), v.to(q.dtype)
        dropout = self.dropout if self.training else 0.0
        if k.shape[2] == T:  # no earlier positions: the plain causal mask lines up
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=T > 1)
        elif T == 1:  # one new position sees every cached one: no mask at all
            y = F.scaled_dot_product_attention(q, k, v, dropout_p=dropout)
        else:
            # query i sits at absolute position start+i and sees keys j <= start+i
            qpos = torch.arange(start, start + T, device=x.device)[:, None]  # (T, 1)
            kpos = torch.arange(k.shape[2], device=x.device)[None, :]  # (1, start+T)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=kpos <= qpos,
                                               dropout_p=dropout)
        y = y.transpose(1, 2).reshape(B, K, T, D)  # (b k) h t d -> b k t (h d)
        return self.proj(y)


class SlotAttention(nn.Module):
    """Attention across slots at the same position: no causal mask, absent slots hidden as keys.

    No leak of the future: at position t every slot's state depends only on tokens <= t, so
    mixing slots at t mixes only the past. No slot position embedding: permuting the slots
    permutes the output.
    """

    # False: a lone slot takes the generic path too (what tests and bench/generate_speed.py
    # compare the shortcut with)
    lone_slot_shortcut = True

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.heads = cfg.num_heads
        self.width = cfg.slot_attention_dim or cfg.dim  # of the query, key and value
        self.qkv = nn.Linear(cfg.dim, 3 * self.width, bias=False)
        self.proj = nn.Linear(self.width, cfg.dim, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x [B, K, T, D] -> [B, K, T, D].

        Args:
            mask: from `slot_mask`, [B*T or 1, 1, 1, K] float, 0 for the slots that may be
                attended and -inf for the others; None attends to all. With one slot it is
                not read: `slot_mask` always lets a lone slot see itself.
        """
        B, K, T, _ = x.shape
        D = self.width
        if self.skips_query_key(K):
            # one key: its softmax weight is 1 whatever the query and the key are, so the
            # output is the value projection alone (a third of the qkv product, no attention)
            return self.proj(F.linear(x, self.qkv.weight[2 * D:]))
        H = self.heads
        # b k t (three h d) -> three (b t) h k d (a view when T = 1)
        qkv = self.qkv(x).view(B, K, T, 3, H, D // H).permute(3, 0, 2, 4, 1, 5)
        qkv = qkv.reshape(3, B * T, H, K, D // H)
        q, k, v = qkv[0], qkv[1], qkv[2]  # each ((B T), H, K, hd)
        if mask is not None and mask.dtype != q.dtype:  # autocast
            mask = mask.to(q.dtype)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        y = y.view(B, T, H, K, D // H).permute(0, 3, 1, 2, 4).reshape(B, K, T, D)
        return self.proj(y)  # (B, K, T, D)

    def skips_query_key(self, slots: int) -> bool:
        """Whether a forward of `slots` slots skips the query, the key and the attention: one
        slot, outside training (in training, attention dropout can drop the lone weight, and
        the query and key weights are kept in the graph, with their zero gradients)."""
        # a quantized qkv (torch.ao dynamic Linear) keeps its weight packed, with no float
        # rows to slice: it takes the generic path, which gives the same output
        return (slots == 1 and self.lone_slot_shortcut and not self.training
                and isinstance(self.qkv, nn.Linear))


def slot_mask(key_ok: torch.Tensor, T: int) -> torch.Tensor:
    """key_ok [B, K] bool -> the additive mask [(B T), 1, 1, K] SlotAttention takes: 0 where a
    key may be attended, -inf elsewhere (what SDPA makes of a bool mask, made once per forward
    instead of once per layer)."""
    B, K = key_ok.shape
    mask = torch.zeros(B, K, dtype=torch.float32, device=key_ok.device)
    mask = mask.masked_fill(~key_ok, float("-inf"))
    return mask[:, None, None, None, :].expand(B, T, 1, 1, K).reshape(B * T, 1, 1, K)


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        hidden = int(cfg.dim * cfg.mlp_ratio)
        self.fc = nn.Linear(cfg.dim, hidden, bias=False)
        self.proj = nn.Linear(hidden, cfg.dim, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    """Pre-norm: x + time attention, then x + slot attention (unless ablated), then x + MLP."""

    def __init__(self, cfg: ModelConfig, layer: int = 0) -> None:
        super().__init__()
        self.norm_time = RMSNorm(cfg.dim)
        self.time = TimeAttention(cfg)
        # kept in mix mode too (K = 1: a per-position linear map, computed as one outside
        # training, see SlotAttention.skips_query_key), so the mix baseline has the same
        # parameters as the multi-stream model it is compared with
        self.slot_attention = cfg.has_slot_attention(layer)
        if self.slot_attention:
            self.norm_slot = RMSNorm(cfg.dim)
            self.slot = SlotAttention(cfg)
        self.norm_mlp = RMSNorm(cfg.dim)
        self.mlp = MLP(cfg)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None, cache: tuple[torch.Tensor, torch.Tensor] | None = None,
                start: int = 0, condition: torch.Tensor | None = None) -> torch.Tensor:
        """x [B, K, T, D] -> [B, K, T, D] (arguments as TimeAttention and SlotAttention;
        `condition` [B, K, D]: this layer's instrument-object term, added at every frame)."""
        if condition is not None:
            x = x + condition[:, :, None, :]
        x = x + self.drop(self.time(self.norm_time(x), cos, sin, cache, start))
        if self.slot_attention:
            x = x + self.drop(self.slot(self.norm_slot(x), mask))
        return x + self.mlp(self.norm_mlp(x))


@dataclass
class KVCache:
    """Preallocated keys and values of every TimeAttention: k, v [layers, B*K, heads, F, hd].

    Made by `MultiStreamTransformer.new_cache`. It is static: a forward with `start=s` writes
    positions [s, s + T) and attends to [0, s + T), so the caller keeps track of how far it
    has written (and may rewind by passing a smaller `start`).
    """

    k: torch.Tensor
    v: torch.Tensor

    @property
    def streams(self) -> int:
        """B*K, the number of (batch item, slot) streams the cache was made for."""
        return self.k.shape[1]

    @property
    def max_frames(self) -> int:
        return self.k.shape[3]

    def layer(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k[i], self.v[i]


class MultiStreamTransformer(nn.Module):
    """Delayed codes seq[B, K, Q, T] of K slots -> logits [B, K, Q, T, cardinality].

    Args:
        config: the architecture; `config.instruments` names the instrument embedding rows.
    """

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        config.validate()  # training fills in num_codebooks and cardinality after reading it
        self.config = config
        self.codec_info: dict[str, Any] | None = None  # the "codec" section of a checkpoint
        # the "training" section: window (frames per training window), slot_dropout (bool)
        self.training_info: dict[str, Any] | None = None
        Q, card = config.num_codebooks, config.cardinality
        # Q per-codebook tables of card + 1 rows (the special token last), stored end to end in
        # one table so the input embedding is one lookup: row of (q, token) = q*(card+1) + token
        self.tokens = nn.Embedding(Q * (card + 1), config.dim)
        self.register_buffer("offsets", torch.arange(Q) * (card + 1), persistent=False)
        self.instrument = nn.Embedding(len(config.instruments), config.dim)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList([Block(config, i) for i in range(config.num_layers)])
        self.norm = RMSNorm(config.dim)
        # Q linear heads side by side in one matrix; no row for the special token, which is
        # never a target
        self.heads = nn.Linear(config.dim, Q * card, bias=False)
        # last, so the weights of a model without objects initialise as before they existed;
        # None there: no parameter, a state dict of the same keys
        self.instrument_objects = InstrumentObjects(config) if config.objects else None
        hd = config.head_dim
        inv_freq = config.rope_theta ** (-torch.arange(0, hd, 2).float() / hd)  # (hd/2,)
        self.register_buffer("inv_freq", inv_freq, persistent=False)
        # (cos, sin, the inv_freq they were made from), made on first use by `rotary`
        self._rotary_table: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.apply(self._init_weights)
        # GPT-2: residual projections scaled by the number of residual branches they feed
        branches = 2 * config.num_layers + sum(b.slot_attention for b in self.blocks)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):
                nn.init.normal_(p, std=0.02 / math.sqrt(branches))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def num_parameters(self) -> int:
        """Number of weights (embeddings and heads included)."""
        return sum(p.numel() for p in self.parameters())

    def new_cache(self, batch: int, slots: int, max_frames: int | None = None,
                  device: torch.device | str | None = None,
                  dtype: torch.dtype | None = None) -> KVCache:
        """A zeroed static KV cache for generation.

        Args:
            batch, slots: B and K of the sequences that will be fed.
            max_frames: positions of the delayed sequence it can hold (default
                config.max_frames); for T frames of codes that is T + Q.
            device, dtype: default those of the model's weights.
        """
        cfg = self.config
        param = next(self.parameters())
        shape = (cfg.num_layers, batch * slots, cfg.num_heads,
                 max_frames or cfg.max_frames, cfg.head_dim)
        device, dtype = device or param.device, dtype or param.dtype
        return KVCache(torch.zeros(shape, device=device, dtype=dtype),
                       torch.zeros(shape, device=device, dtype=dtype))

    def forward(self, seq: torch.Tensor, instrument: torch.Tensor,
                present: torch.Tensor | None = None, cache: KVCache | None = None,
                start: int = 0, objects: Objects | torch.Tensor | None = None) -> torch.Tensor:
        """Logits [B, K, Q, T, card] for seq [B, K, Q, T] at positions [start, start + T).

        logits[..., t, :] is the distribution of seq[..., t + 1] (GPT convention).

        Args:
            seq: delayed codes (`build_delay`), ids in [0, cardinality]; cardinality = special.
            instrument: [B, K] ids into `config.instruments`.
            present: [B, K] bool, default all True; absent slots (padding) are never attended
                to, so they change nothing in the present ones (their own logits are junk).
            cache: from `new_cache(B, K, ...)`; the chunk's keys and values are written at
                [start, start + T) and the chunk attends to every cached position before it.
            start: absolute position of seq's first column (only meaningful with a cache).
            objects: each slot's instrument object (a model with `config.objects` only):
                `Objects` (ids, reference clips) encoded here, or the condition
                `object_condition` made of them once for many forwards (generation); None:
                every slot unconditioned (the learnt none vector).
        """
        cfg = self.config
        B, K, Q, T = seq.shape
        self._check_inputs(seq, instrument, cache, start)
        condition = self._condition(objects, B, K)  # (L, B, K, D) or None
        # one step of a few streams is too little work to share out: OpenMP barriers cost more
        # than they save, and on busy cores each one waits for a descheduled thread (2 threads
        # on 2 shared cores made such a step 40x slower than 1 thread)
        small = cache is not None and seq.device.type == "cpu" and B * K * T <= SMALL_STEP_ROWS
        with at_most_threads(1 if small else None):
            mask = None
            # read by slot attention alone, and not by its lone-slot shortcut
            slot = next((b.slot for b in self.blocks if b.slot_attention), None)
            reads_mask = slot is not None and not slot.skips_query_key(K)
            if present is not None and reads_mask:
                present = present.bool()
                # a batch row with no present slot would mask every key (NaN); let it see itself
                mask = slot_mask(present | ~present.any(dim=1, keepdim=True), T)
            x = self.tokens(seq + self.offsets[:, None]).sum(dim=2)  # (B, K, Q, T, D) -> (B, K, T, D)
            x = x + self.instrument(instrument)[:, :, None, :]  # (B, K, T, D)
            x = self.drop(x)
            cos, sin = self.rotary(start, T)  # (T, hd)
            for i, block in enumerate(self.blocks):
                x = block(x, cos, sin, mask, cache.layer(i) if cache is not None else None, start,
                          None if condition is None else condition[i])
            logits = self.heads(self.norm(x))  # (B, K, T, Q*card)
        return logits.view(B, K, T, Q, cfg.cardinality).transpose(2, 3)  # (B, K, Q, T, card)

    def object_condition(self, objects: Objects | None, batch: int | None = None,
                         slots: int | None = None) -> torch.Tensor:
        """The per-layer instrument-object terms [layers, B, K, D] of `objects` (None: every
        slot of a [batch, slots] input unconditioned): what `forward(objects=...)` adds at
        every frame, computed once for a whole generation."""
        if self.instrument_objects is None:
            raise ValueError("this model has no instrument objects (config.objects is False)")
        if objects is None:
            objects = Objects(torch.zeros(batch, slots, dtype=torch.long,
                                          device=self.tokens.weight.device))
        if objects.reference is not None and objects.reference.shape[2] != \
                self.config.num_codebooks:
            raise ValueError(f"reference has {objects.reference.shape[2]} codebooks, the model "
                             f"{self.config.num_codebooks}")
        return self.instrument_objects(objects, self.embed_frames)

    def embed_frames(self, codes: torch.Tensor) -> torch.Tensor:
        """Token embeddings summed over codebooks: codes [B, K, Q, T] -> [B, K, T, D]."""
        return self.tokens(codes + self.offsets[:, None]).sum(dim=2)

    def _condition(self, objects: Objects | torch.Tensor | None, B: int,
                   K: int) -> torch.Tensor | None:
        if self.instrument_objects is None:
            if objects is not None:
                raise ValueError("this model has no instrument objects (config.objects is "
                                 "False); pass objects=None")
            return None
        if isinstance(objects, torch.Tensor):
            expected = (self.config.num_layers, B, K, self.config.dim)
            if tuple(objects.shape) != expected:
                raise ValueError(f"an object condition must be {list(expected)}, got "
                                 f"{list(objects.shape)}")
            return objects
        if objects is not None and tuple(objects.id.shape) != (B, K):
            raise ValueError(f"object ids must be [B, K] = [{B}, {K}], got "
                             f"{list(objects.id.shape)}")
        return self.object_condition(objects, B, K)

    def rotary(self, start: int, T: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(cos, sin) [T, head_dim] of positions [start, start + T), sliced from a table that is
        computed once (and again when the model moves or the table is too short)."""
        table = self._rotary_table
        if table is None or table[2] is not self.inv_freq or table[0].shape[0] < start + T:
            # a normal tensor even when first asked for under inference_mode, so a later
            # training forward can save it for backward
            with torch.inference_mode(False), torch.no_grad():
                positions = torch.arange(max(start + T, self.config.max_frames),
                                         device=self.inv_freq.device)
                table = (*rotary_angles(positions, self.inv_freq), self.inv_freq)
            self._rotary_table = table
        return table[0][start:start + T], table[1][start:start + T]

    def _check_inputs(self, seq: torch.Tensor, instrument: torch.Tensor, cache: KVCache | None,
                      start: int) -> None:
        """Refuse inputs that would silently read the wrong embedding row. Token and instrument
        ids are checked on the host when they live there, and on an accelerator by a
        device-side assertion, never by reading them back (a host sync per forward)."""
        cfg = self.config
        B, K, Q, T = seq.shape
        if Q != cfg.num_codebooks:
            raise ValueError(f"seq has {Q} codebooks, the model {cfg.num_codebooks}")
        if instrument.shape != (B, K):
            raise ValueError(f"instrument must be [B, K] = [{B}, {K}], got "
                             f"{list(instrument.shape)}")
        if cfg.mode == "mix" and K != 1:
            raise ValueError(f"a mix-mode model reads one stream, got {K} slots")
        if K > cfg.max_slots:
            raise ValueError(f"{K} slots exceed the model's max_slots={cfg.max_slots}")
        if cache is not None:
            if cache.streams != B * K:
                raise ValueError(f"cache holds {cache.streams} streams, seq has {B}x{K}")
            if start < 0 or start + T > cache.max_frames:
                raise ValueError(f"positions [{start}, {start + T}) exceed the cache's "
                                 f"{cache.max_frames}")
        if not seq.numel() or torch.compiler.is_compiling():
            return
        card, rows = cfg.cardinality, len(cfg.instruments)
        # in the shared table, token card + 1 of codebook q would be codebook q + 1's row 0
        bad_seq = f"seq holds ids outside [0, {card}] ({card} is the special token)"
        bad_instrument = f"instrument ids must be in [0, {rows}) for {cfg.instruments}"
        if seq.device.type != "cpu" or instrument.device.type != "cpu":
            # reading values back from an accelerator would stall it once per forward, every
            # training step included; a device-side assertion checks them without waiting
            # (a failure surfaces as a device error at the next synchronisation)
            torch._assert_async(((seq >= 0) & (seq <= card)).all(), bad_seq)
            torch._assert_async(((instrument >= 0) & (instrument < rows)).all(), bad_instrument)
            return
        bounds = torch.stack([t.long() for t in (*seq.aminmax(), *instrument.aminmax())])
        seq_lo, seq_hi, inst_lo, inst_hi = bounds.tolist()  # host memory: no sync
        if seq_lo < 0 or seq_hi > card:
            raise ValueError(bad_seq)
        if inst_lo < 0 or inst_hi >= rows:
            raise ValueError(bad_instrument)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor,
             mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy averaged over the positions where `mask` is True.

        Args:
            logits: [B, K, Q, T, card] from forward.
            targets: [B, K, Q, T], usually seq[..., 1:]; may hold the special token where mask
                is False (it is clamped into range there, never counted).
            mask: [B, K, Q, T] bool; the trainer leaves out special tokens, given slots and
                absent slots.

        Returns:
            (total, per_codebook[Q]); a codebook with no masked position counts 0.
        """
        ce = self.token_nll(logits, targets)  # (B, K, Q, T)
        m = mask.to(ce.dtype)
        ce = ce * m
        total = ce.sum() / m.sum().clamp_min(1.0)
        per_codebook = ce.sum(dim=(0, 1, 3)) / m.sum(dim=(0, 1, 3)).clamp_min(1.0)  # (Q,)
        return total, per_codebook

    @staticmethod
    def token_nll(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of every position, [B, K, Q, T] (special targets clamped, not masked)."""
        card = logits.shape[-1]
        return F.cross_entropy(logits.flatten(0, -2).float(), targets.clamp(0, card - 1).flatten(),
                               reduction="none").view_as(targets)

    # -- checkpoints ------------------------------------------------------------------------
    def save_pretrained(self, directory: str | os.PathLike) -> None:
        """Write model.safetensors + config.json (with the "codec" section if there is one).

        Args:
            directory: created if missing; other files in it are left alone.
        """
        config = to_dict(self.config)
        if self.codec_info is not None:
            config["codec"] = self.codec_info
        if self.training_info is not None:
            config["training"] = self.training_info
        save_pretrained(directory, self.state_dict(), config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike,
                        device: torch.device | str | None = None) -> MultiStreamTransformer:
        """Load a folder written by `save_pretrained` (or train/train.py), in eval mode.

        Args:
            directory: holds model.safetensors and config.json.
            device: where to put the model (default: CPU).
        """
        state, config = load_pretrained(directory)
        codec = config.pop("codec", None)
        training = config.pop("training", None)
        model = cls(from_dict(ModelConfig, config))
        model.load_state_dict(state)
        model.codec_info = codec
        model.training_info = training
        return model.to(device).eval() if device is not None else model.eval()
