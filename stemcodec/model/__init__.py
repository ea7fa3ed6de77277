"""The multi-stream transformer: tensors in, tensors out (no files but its checkpoints)."""

from .config import ModelConfig
from .objects import Objects
from .patterns import build_delay, revert_delay, valid_mask
from .sampling import SamplingConfig, generate_codes, sample_logits
from .transformer import KVCache, MultiStreamTransformer

__all__ = ["KVCache", "ModelConfig", "MultiStreamTransformer", "Objects", "SamplingConfig", "build_delay",
           "generate_codes", "revert_delay", "sample_logits", "valid_mask"]
