"""ModelConfig: the architecture of a MultiStreamTransformer (the `model:` section of a config)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..config import ConfigError
from ..objects import NUM_OBJECTS
from ..slots import DEFAULT_VOCABULARY


@dataclass
class ModelConfig:
    """Everything needed to rebuild a MultiStreamTransformer; stored in its config.json.

    The defaults make a working mini model (about 5 M parameters besides the embeddings).
    `num_codebooks` and `cardinality` must match the codec; training sets them from the cache.
    """

    vocabulary: list[str] = field(default_factory=lambda: list(DEFAULT_VOCABULARY))
    num_codebooks: int = 4  # Q
    cardinality: int = 1024  # entries per codebook; the special token is id `cardinality`
    dim: int = 256
    num_layers: int = 6
    num_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    max_slots: int = 6  # the most slots K one forward accepts
    max_frames: int = 3000  # positions of the delayed sequence the KV cache holds by default
    rope_theta: float = 10000.0
    slot_attention: bool = True  # false: the "independent streams" ablation
    # a lighter slot attention (issue 14): in every n-th layer only (the last of each n), and
    # its query, key and value this wide (0: model.dim); 1 and 0 are the full one
    slot_attention_every: int = 1
    slot_attention_dim: int = 0
    mode: Literal["stems", "mix"] = "stems"  # mix: one stream (K = 1) of the mixed audio
    # instrument objects (docs/objects.md): a persistent vector per slot, from its object id
    # (GM program or drum kit) and/or a reference clip, added at every layer. False: none of
    # it exists (no parameters): the model of older checkpoints
    objects: bool = False
    num_objects: int = NUM_OBJECTS  # rows of the object-id embedding (stemcodec.objects)
    timbre_layers: int = 2  # residual MLP layers of the reference-clip encoder

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ConfigError naming the first key that cannot build a model.

        Called on construction and again by the model, since training fills in
        `num_codebooks` and `cardinality` after the config is read.
        """
        positive = ["num_codebooks", "cardinality", "dim", "num_layers", "num_heads",
                    "max_slots", "max_frames"]
        for key in positive:
            if getattr(self, key) < 1:
                raise ConfigError(f"model.{key} must be at least 1, got {getattr(self, key)}")
        if self.dim % self.num_heads or (self.dim // self.num_heads) % 2:
            raise ConfigError(f"model.num_heads={self.num_heads} must split model.dim={self.dim} "
                              "into heads of even width (rotary embedding)")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout}")
        if not 1 <= self.slot_attention_every <= self.num_layers:
            raise ConfigError(f"model.slot_attention_every must be 1 to model.num_layers "
                              f"({self.num_layers}), got {self.slot_attention_every}")
        if self.slot_attention_dim < 0 or self.slot_attention_dim % self.num_heads:
            raise ConfigError(f"model.slot_attention_dim={self.slot_attention_dim} must be 0 "
                              f"(model.dim) or a multiple of model.num_heads={self.num_heads}")
        if self.mlp_ratio <= 0:
            raise ConfigError(f"model.mlp_ratio must be positive, got {self.mlp_ratio}")
        if self.mode not in ("stems", "mix"):
            raise ConfigError(f"model.mode={self.mode!r} is not one of stems, mix")
        if self.objects and self.mode == "mix":
            raise ConfigError("model.objects needs model.mode=stems: the mix stream has no "
                              "instrument of its own")
        if self.num_objects < 1 or self.timbre_layers < 0:
            raise ConfigError(f"model.num_objects must be at least 1 and model.timbre_layers "
                              f"0 or more, got {self.num_objects}, {self.timbre_layers}")
        if not self.vocabulary or len(set(self.vocabulary)) != len(self.vocabulary):
            raise ConfigError(f"model.vocabulary must be non-empty names without repeats, "
                              f"got {self.vocabulary}")

    def has_slot_attention(self, layer: int) -> bool:
        """Whether layer `layer` (0-based) has slot attention."""
        return self.slot_attention and (layer + 1) % self.slot_attention_every == 0

    @property
    def instruments(self) -> list[str]:
        """Names of the instrument embedding rows (a single "mix" row in mix mode)."""
        return ["mix"] if self.mode == "mix" else list(self.vocabulary)

    @property
    def special(self) -> int:
        """Token id of the delay pattern's "no token here" symbol."""
        return self.cardinality

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads
