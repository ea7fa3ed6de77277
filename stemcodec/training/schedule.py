"""The learning-rate schedule of both trainers: linear warmup, then cosine decay."""

from __future__ import annotations

import math


def learning_rate(step: int, base: float, warmup_steps: int, min_lr_ratio: float,
                  steps: int) -> float:
    """Linear warmup over warmup_steps, then cosine to base * min_lr_ratio at `steps`."""
    if step < warmup_steps:
        return base * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return base * (min_lr_ratio + (1 - min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
