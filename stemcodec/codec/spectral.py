"""An encoder that reads the spectrum: an STFT on the decoder's frames, then ConvNeXt blocks at
the frame rate, then a projection to the codec's dimension.

Why: SEANet's strided convolutions see the waveform, so a steady tone's encodings change from
frame to frame with the tone's phase against the frame grid (a 110 Hz sine cycles through 8 of
the first codebook's entries every 15 frames): bits go to phase, which no listener hears, and
a codebook learnt from music has no entries for the tones it did not see. The STFT magnitude
of a steady tone is the same at every frame, and its phase advance from one frame to the next
(relative to the bin's centre) states the partial's frequency to a fraction of a bin: both are
given to the encoder, so it has pitch without learning an analysis filter bank. All the layers
run at the frame rate: cheap on a CPU.

Not causal: a frame's window reaches (n_fft - hop) / 2 samples past its hop, and the blocks look
at past frames only, so `Codec.encode` gives it right context like any non-causal encoder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .istft import ConvNeXtBlock


class SpectralEncoder(nn.Module):
    """Audio [B, 1, S] -> encodings [B, dimension, ceil(S / hop)].

    Args:
        dimension: channels of the encodings (the quantizer's dimension).
        ratios: the hop's factors, in SEANet's play order (kept, reversed as SEANetEncoder
            keeps them, so the hop and the buzz rates read the same for either encoder).
        n_fft: analysis window (default 4 x hop, the iSTFT decoder's).
        dim, layers, kernel, mlp_ratio: the ConvNeXt blocks.
    """

    def __init__(self, dimension: int, ratios: Sequence[int], n_fft: int | None = None,
                 dim: int = 256, layers: int = 8, kernel: int = 7, mlp_ratio: float = 3.0):
        super().__init__()
        self.ratios = list(reversed([int(r) for r in ratios]))
        self.hop = math.prod(self.ratios)
        self.n_fft = int(n_fft or 4 * self.hop)
        self.dimension = dimension
        bins = self.n_fft // 2 + 1
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        self.register_buffer("centre", 2 * math.pi * self.hop / self.n_fft * torch.arange(bins),
                             persistent=False)
        self.kernel = kernel
        self.embed = nn.Conv1d(3 * bins, dim, 1)  # per frame: the blocks bring the context
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, kernel, mlp_ratio, 1.0 / layers)
                                    for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.project = nn.Linear(dim, dimension)

    def features(self, wav: torch.Tensor) -> torch.Tensor:
        """[B, 1, S] -> [B, 3 x bins, T]: log magnitude, and the phase advance from the previous
        frame relative to the bin's centre (cos, sin), scaled by the compressed magnitude so
        that silent bins say nothing."""
        x = wav.flatten(0, 1)
        frames = math.ceil(x.shape[-1] / self.hop)
        pad = (self.n_fft - self.hop) // 2
        x = F.pad(x, (pad, pad + frames * self.hop - x.shape[-1]))
        spec = torch.stft(x, self.n_fft, self.hop, window=self.window, center=False,
                          return_complex=True)[..., :frames]  # [B, F, T], frame t at (t+1/2) hop
        level = spec.abs()
        previous = F.pad(spec, (1, 0))[..., :-1]
        advance = torch.angle(spec * previous.conj()) - self.centre[:, None]
        strength = (level * F.pad(level, (1, 0))[..., :-1]).clamp_min(1e-12).pow(0.15)
        # floored 90 dB under a full-scale sine's bin (320): rounding noise says nothing
        return torch.cat([torch.log(level + 1e-2), strength * torch.cos(advance),
                          strength * torch.sin(advance)], dim=1)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        x = self.embed(self.features(wav))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        return self.project(self.final_norm(x.transpose(1, 2))).transpose(1, 2)
