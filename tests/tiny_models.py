"""Tiny generator checkpoints on the debug codec, for the tests of generation (API, streaming)."""

from pathlib import Path

import torch

from stemcodec.codec import load_codec
from stemcodec.model import ModelConfig, MultiStreamTransformer


def tiny_checkpoint(path: Path, mode: str = "stems", window: int = 20) -> Path:
    """A random 2-layer model saved at `path`; `window` frames of training context (a 1.2 s
    piece slides past the default)."""
    torch.manual_seed(0)
    cfg = ModelConfig(num_codebooks=4, cardinality=1024, dim=32, num_layers=2, num_heads=2,
                      max_frames=40, mode=mode, max_slots=1 if mode == "mix" else 6)
    model = MultiStreamTransformer(cfg).eval()
    model.codec_info = load_codec("debug").info()
    model.training_info = {"window": window, "slot_dropout": True}
    model.save_pretrained(path)
    return path
