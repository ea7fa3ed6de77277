"""The codebook delay pattern: codebook q is shifted right by q frames (MusicGen's "delay").

With Q = 3 codebooks, T = 4 frames and `.` the special token:

    frame t:      0    1    2    3
    codes   q0:  a0   a1   a2   a3
            q1:  b0   b1   b2   b3
            q2:  c0   c1   c2   c3

    position p:   0    1    2    3    4    5    6
    seq     q0:   .   a0   a1   a2   a3    .    .
            q1:   .    .   b0   b1   b2   b3    .
            q2:   .    .    .   c0   c1   c2   c3

Column 0 is the start column (all special), so every real token is predicted from the
positions before it; at each step the model emits codebook q of frame p-1-q, which means the
coarse codebook of a frame is known before its finer ones are predicted.
`build_delay` and `revert_delay` are exact inverses.
"""

from __future__ import annotations

import torch


def valid_mask(num_codebooks: int, frames: int, device=None) -> torch.Tensor:
    """bool [Q, T+Q]: True where the delayed sequence holds a real token."""
    q = torch.arange(num_codebooks, device=device)[:, None]
    p = torch.arange(frames + num_codebooks, device=device)[None, :]
    t = p - 1 - q
    return (t >= 0) & (t < frames)


def build_delay(codes: torch.Tensor, special: int) -> torch.Tensor:
    """codes [..., Q, T] -> delayed sequence [..., Q, T+Q] (new tensor; input untouched)."""
    *lead, Q, T = codes.shape
    seq = codes.new_full((*lead, Q, T + Q), special)
    for q in range(Q):
        seq[..., q, 1 + q: 1 + q + T] = codes[..., q, :]
    return seq


def revert_delay(seq: torch.Tensor, num_codebooks: int) -> torch.Tensor:
    """delayed sequence [..., Q, T+Q] -> codes [..., Q, T]."""
    Q = num_codebooks
    T = seq.shape[-1] - Q
    if seq.shape[-2] != Q or T < 0:
        raise ValueError(f"expected [..., {Q}, T+{Q}], got {tuple(seq.shape)}")
    return torch.stack([seq[..., q, 1 + q: 1 + q + T] for q in range(Q)], dim=-2)
