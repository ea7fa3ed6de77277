"""Generation from Python: `StemGenerator.from_pretrained(...).generate(...)` -> GenerationOutput.

`python -m stemcodec.generate` is a thin wrapper around the same calls.
"""

from .generator import StemGenerator
from .output import GenerationOutput

__all__ = ["GenerationOutput", "StemGenerator"]
