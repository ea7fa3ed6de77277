"""The multi-stream transformer: tensors in, tensors out (no files but its checkpoints)."""

from .config import ModelConfig
from .patterns import build_delay, revert_delay, valid_mask
from .transformer import KVCache, MultiStreamTransformer

__all__ = ["KVCache", "ModelConfig", "MultiStreamTransformer", "build_delay", "revert_delay",
           "valid_mask"]
