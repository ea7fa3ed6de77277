"""Songs of any length in bounded memory: decode, resample, separate and encode block by block.

Each stage is a `Stream` (streams.py) that is read front to back, `read(n)` at a time, and
holds only what the next block needs:

  streams.py   the file (stemcodec.decode's blocks, holes filled), channels, padding, levels
  resample.py  torchaudio's resampling, block by block, the same samples as on the whole
  separate.py  Demucs's overlapping segments (demucs.apply.apply_model), added up as they come
  encode.py    the codec's chunks with their context (Codec.encode), and the shard on disk,
               written as the codes come

Every stage gives what the whole-file path gives for the same audio; tests/test_blocks.py
holds each to it.
"""
