"""ModelConfig: the architecture of a MultiStreamTransformer (the `model:` section of a config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..slots import DEFAULT_VOCABULARY


@dataclass
class ModelConfig:
    vocabulary: list[str] = field(default_factory=lambda: list(DEFAULT_VOCABULARY))
    num_codebooks: int = 4  # Q; set from the token cache at training time
    cardinality: int = 1024  # entries per codebook; the special token is id `cardinality`
    dim: int = 256
    num_layers: int = 4
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    max_slots: int = 6
    max_frames: int = 3000  # longest sequence the KV cache is sized for by default
    rope_theta: float = 10000.0
    slot_attention: bool = True  # false: the "independent streams" baseline
    mode: Literal["stems", "mix"] = "stems"  # mix: one stream of the mixed audio's tokens

    @property
    def instruments(self) -> list[str]:
        """Names of the instrument embedding rows (a single "mix" row in mix mode)."""
        return ["mix"] if self.mode == "mix" else list(self.vocabulary)
