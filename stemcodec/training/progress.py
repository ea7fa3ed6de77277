"""Where a run stands: the step counter it saves, its progress bar, what is due at a step, and
the guard that stops it when the loss is no longer a number."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from accelerate import Accelerator
from tqdm import tqdm

from ..errors import UserError


class Progress:
    """The step counter, saved with the training state (register_for_checkpointing)."""

    def __init__(self) -> None:
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


def progress_bar(accelerator: Accelerator, total: int, initial: int, desc: str) -> tqdm:
    """A bar on the main process only, on stderr (stdout stays for the summary)."""
    return tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True,
                disable=not accelerator.is_main_process, file=sys.stderr)


def due(step: int, every: int, last: int) -> bool:
    """Whether something done every `every` steps (and at the last step) is due at `step`."""
    return step % every == 0 or step == last


def check_finite(accelerator: Accelerator, loss: torch.Tensor, step: int,
                 last_good: Path | None, hint: str) -> None:
    """Stop with one line when any process's loss is inf or NaN, before the optimizer step
    writes it into the weights; the line names the checkpoint that is still good."""
    if not torch.isfinite(accelerator.reduce(loss.detach(), "max")):
        where = f"; the last good checkpoint {last_good} is intact" if last_good else ""
        raise UserError(f"loss became {loss.item()} at step {step}{where}; {hint}")
