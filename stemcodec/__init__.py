"""stemcodec: raw-audio music generation with one token stream per instrument slot."""

__version__ = "0.1.0"
