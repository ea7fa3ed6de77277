"""An exponential moving average of a model's weights, saved with the training state."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn


class EMA(AveragedModel):
    """torch's AveragedModel with the EMA update: a copy of the model on the model's device,
    its weights `decay * ema + (1 - decay) * weights` after every update (the first update
    copies them). The averaged model is `.module`.

    Loading copies into the copy's own tensors, so a state that accelerate restores on the
    CPU lands on the device the weights live on. Buffers are not averaged (the models'
    buffers are constants)."""

    def __init__(self, model: nn.Module, decay: float):
        super().__init__(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.requires_grad_(False)

    def load_state_dict(self, state: dict[str, Any], strict: bool = True, assign: bool = False):
        if "n_averaged" not in state:  # the hand-written EMA before: the bare averaged weights
            state = {**{f"module.{k}": v for k, v in state.items()},
                     "n_averaged": torch.tensor(1, dtype=torch.long)}
        return super().load_state_dict(state, strict=strict, assign=assign)
