"""The codebook delay pattern: codebook q is shifted right by q frames (MusicGen's "delay").

With Q = 3 codebooks, T = 4 frames and `.` the special token (id = cardinality):

    frame t:      0    1    2    3
    codes   q0:  a0   a1   a2   a3
            q1:  b0   b1   b2   b3
            q2:  c0   c1   c2   c3

    position p:   0    1    2    3    4    5    6
    seq     q0:   .   a0   a1   a2   a3    .    .
            q1:   .    .   b0   b1   b2   b3    .
            q2:   .    .    .   c0   c1   c2   c3
                  ^ start column         ^ "no token any more" tail

so seq[q, 1 + q + t] = codes[q, t] and the sequence has T + Q positions. Column 0 is all
special, so the first real frame is predicted from the start column. A model reading positions
<= p predicts position p + 1: codebook q of frame t comes one step after codebook q - 1 of the
same frame, so the coarse codebooks of a frame are known before its finer ones are drawn.
With Q = 1 there is no delay, only the start column.
"""

from __future__ import annotations

import torch


def build_delay(codes: torch.Tensor, special: int) -> torch.Tensor:
    """Apply the delay pattern (see the module docstring for the picture).

    Args:
        codes: [..., Q, T] integer codes, usually [B, K, Q, T]; left untouched.
        special: the "no token" id written around the shifted codes (the cardinality).

    Returns:
        A new tensor [..., Q, T + Q] of the same dtype and device.
    """
    if codes.dim() < 2:
        raise ValueError(f"codes must be [..., Q, T], got shape {tuple(codes.shape)}")
    *lead, Q, T = codes.shape
    seq = codes.new_full((*lead, Q, T + Q), special)
    for q in range(Q):
        seq[..., q, 1 + q: 1 + q + T] = codes[..., q, :]  # a copy: `codes` is never aliased
    return seq


def revert_delay(seq: torch.Tensor, num_codebooks: int) -> torch.Tensor:
    """Undo `build_delay` exactly: revert_delay(build_delay(c, s), Q) == c.

    Args:
        seq: [..., Q, T + Q] delayed sequence (start column included); left untouched.
        num_codebooks: Q, checked against seq's second-to-last dimension.

    Returns:
        A new tensor [..., Q, T] of codes (whatever sits at special positions is dropped).
    """
    if seq.dim() < 2:
        raise ValueError(f"seq must be [..., Q, T + Q], got shape {tuple(seq.shape)}")
    *lead, Q, length = seq.shape
    if Q != num_codebooks:
        raise ValueError(f"sequence has {Q} codebooks, expected {num_codebooks}")
    T = length - Q
    if T < 0:
        raise ValueError(f"sequence of length {length} is shorter than its {Q} codebooks")
    # torch.stack copies, so the result never shares memory with `seq`
    return torch.stack([seq[..., q, 1 + q: 1 + q + T] for q in range(Q)], dim=-2)


def valid_mask(num_codebooks: int, frames: int,
               device: torch.device | str | None = None) -> torch.Tensor:
    """Where the delayed sequence holds a real code rather than the special token.

    Args:
        num_codebooks: Q.
        frames: T, the number of frames before the delay.
        device: where to build the mask.

    Returns:
        bool [Q, T + Q], True exactly at seq[q, 1 + q + t] for 0 <= t < T.
    """
    q = torch.arange(num_codebooks, device=device)[:, None]  # [Q, 1]
    p = torch.arange(frames + num_codebooks, device=device)[None, :]  # [1, T+Q]
    return (p >= 1 + q) & (p < 1 + q + frames)  # [Q, T+Q]
