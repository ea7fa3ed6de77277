"""stemcodec: raw-audio music generation with one token stream per instrument slot.

    from stemcodec import StemGenerator
    out = StemGenerator.from_pretrained().generate(slots="vocals-free:4", duration=10.0, seed=0)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["GenerationOutput", "StemGenerator", "__version__"]

if TYPE_CHECKING:
    from .generation import GenerationOutput, StemGenerator


def __getattr__(name: str) -> Any:
    # imported on first use: `import stemcodec` (every CLI's first line) stays free of torch
    if name in ("GenerationOutput", "StemGenerator"):
        from . import generation
        return getattr(generation, name)
    raise AttributeError(f"module 'stemcodec' has no attribute {name!r}")
