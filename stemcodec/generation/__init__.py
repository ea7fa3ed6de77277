"""Generation from Python: `StemGenerator.from_pretrained(...).generate(...)` -> GenerationOutput.

`python -m stemcodec.generate` is a thin wrapper around the same calls; `.stream(...)` yields
the audio while it is generated (streaming.py).
"""

from .generator import StemGenerator
from .output import GenerationOutput
from .streaming import GenerationStream, StreamChunk

__all__ = ["GenerationOutput", "GenerationStream", "StemGenerator", "StreamChunk"]
