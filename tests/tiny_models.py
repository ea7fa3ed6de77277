"""Tiny generator checkpoints on the debug codec, for the tests of generation (API, streaming)."""

from pathlib import Path

import torch

from stemcodec.codec import load_codec
from stemcodec.model import ModelConfig, MultiStreamTransformer

# what the tiny objects model's "training data" had per slot (its training.objects)
TRAINED_OBJECTS = {"drums": ["standard-kit", "jazz-kit"], "bass": ["acoustic-bass", "finger-bass"],
                   "guitar": ["nylon-guitar", "steel-guitar", "jazz-guitar"],
                   "piano": ["acoustic-grand-piano", "electric-piano-1"],
                   "other": ["violin", "flute", "trumpet"]}


def tiny_checkpoint(path: Path, mode: str = "stems", window: int = 20,
                    objects: bool = False) -> Path:
    """A random 2-layer model saved at `path`; `window` frames of training context (a 1.2 s
    piece slides past the default); `objects`: with instrument objects, trained (it says)
    on TRAINED_OBJECTS."""
    torch.manual_seed(0)
    cfg = ModelConfig(num_codebooks=4, cardinality=1024, dim=32, num_layers=2, num_heads=2,
                      max_frames=40, mode=mode, max_slots=1 if mode == "mix" else 6,
                      objects=objects)
    model = MultiStreamTransformer(cfg).eval()
    model.codec_info = load_codec("debug").info()
    model.training_info = {"window": window, "slot_dropout": True}
    if objects:
        model.training_info.update(objects=TRAINED_OBJECTS, reference_frames=16)
    model.save_pretrained(path)
    return path
