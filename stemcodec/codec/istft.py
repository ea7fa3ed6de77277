"""A Vocos-style decoder: ConvNeXt blocks at the frame rate predict an STFT (log magnitude
and phase) per frame, and an inverse STFT makes the waveform.

Why not SEANet's transposed convolutions: each upsampling stage of stride s repeats its kernel
every s samples, which puts a comb of peaks at multiples of the stage's input rate (the bundled
mini codec's 600 Hz buzz, 75 frames/s x 8), and the model has to learn pitch as a pattern of
samples. Here every frame states its spectrum directly; the hop-rate periodicity is that of an
overlap-added Hann window, which sums to a constant. It is also cheap: all the layers run at
75 frames/s, none at 24 kHz.

Causal: every convolution looks only at past frames, so the decoder runs chunk by chunk; only
the inverse STFT's overlap needs `lookahead_frames` frames after a chunk's end.

Phase reference (`phase: reference`): the predicted phase of bin k at frame t is added to
2 pi k hop t / n_fft, the phase a steady sinusoid at the bin's centre advances by. A constant
prediction is then a steady tone, not a click at every frame (an untrained absolute-phase
head makes a comb at the frame rate: every frame the same waveform); t counts frames from
`offset`, which chunked decoding passes, so chunks agree with one pass.

Accumulated phase (`phase: accumulated`): a time-invariant head fed the same tokens at every
frame (a steady tone) predicts the same phase at every frame, so the output repeats every hop:
a comb at the frame rate's multiples, and a 440 Hz sine comes back at 75 Hz multiples (the
encoder then spends bits on the tone's phase against the frame grid). Here a second head
predicts each bin's instantaneous frequency as a deviation from the bin's centre (within +-2
bins, the Hann window's main lobe) and the phase is its running sum over frames, as in a
phase vocoder; the first head's phase is added as a per-frame offset (the bins' relative
phases: transients, vertical coherence). A steady token now makes a steady tone at any
frequency. The running sum is state: chunked decoding passes it on (`spectrum(..., anchor)`).

Noise gate (`noise=True`): a regression-trained head predicts smooth phases, so noise-like
content (a bow, breath, a cymbal, reverb) comes out with the same phases frame after frame,
a comb at the frame rate's multiples (75 Hz). A per-bin gate g in (0, 1) adds g x a fixed
pseudo-random phase (a table of 4096 frames x bins, indexed by the absolute frame) to the
predicted one: tonal bins keep g near 0, noisy bins take random phases. The table is the
same at every call, so decoding stays deterministic and chunks still agree.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

PHASES = ("absolute", "reference", "accumulated")


class ConvNeXtBlock(nn.Module):
    """Causal depthwise convolution -> LayerNorm -> MLP, with a learnt per-channel scale on the
    residual branch (ConvNeXt, as Vocos uses it, but padded on the left only)."""

    def __init__(self, dim: int, kernel: int, mlp_ratio: float, layer_scale: float):
        super().__init__()
        self.kernel = kernel
        self.dwconv = nn.Conv1d(dim, dim, kernel, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.up = nn.Linear(dim, hidden)
        self.down = nn.Linear(hidden, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [B, C, T]
        y = self.dwconv(F.pad(x, (self.kernel - 1, 0)))
        y = self.down(F.gelu(self.up(self.norm(y.transpose(1, 2)))))
        return x + (self.gamma * y).transpose(1, 2)


class ISTFTDecoder(nn.Module):
    NOISE_FRAMES = 4096  # period of the noise-phase table: 55 s at 75 frames/s
    SILENT_BINS = 2  # the lowest bins, kept at zero (see spectrum)
    """Encodings [B, D, T] -> audio [B, 1, T * hop].

    Args:
        dimension: the encodings' channels (the codec's `dimension`).
        hop: samples per frame.
        n_fft: the inverse STFT's size (default 4 x hop: a Hann window at 75 % overlap).
        dim: channels of the ConvNeXt blocks; layers: their number; kernel: their depthwise
            kernel in frames; mlp_ratio: the MLP's widening.
    """

    def __init__(self, dimension: int, hop: int, n_fft: int | None = None, dim: int = 256,
                 layers: int = 8, kernel: int = 7, mlp_ratio: float = 3.0,
                 phase: str = "absolute", noise: bool = False):
        super().__init__()
        self.hop = int(hop)
        self.n_fft = int(n_fft or 4 * hop)
        if self.n_fft < self.hop or (self.n_fft - self.hop) % 2:
            raise ValueError(f"n_fft {self.n_fft} must be at least the hop {self.hop} and "
                             "differ from it by an even number")
        if phase not in PHASES:
            raise ValueError(f"phase {phase!r}: {', '.join(PHASES)}")
        self.phase = phase
        self.kernel = kernel
        self.embed = nn.Conv1d(dimension, dim, kernel)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.blocks = nn.ModuleList(ConvNeXtBlock(dim, kernel, mlp_ratio, 1.0 / layers)
                                    for _ in range(layers))
        self.final_norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, self.n_fft + 2)  # log magnitude and phase of n_fft/2+1 bins
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)
        bins = self.n_fft // 2 + 1
        self.frequency = None
        if phase == "accumulated":  # starts at the bins' centres: a steady tone per bin
            self.frequency = nn.Linear(dim, bins)
            nn.init.zeros_(self.frequency.weight)
            nn.init.zeros_(self.frequency.bias)
        self.detach_running = False  # see spectrum: the waveform losses leave the frequencies alone
        self.gate = None
        if noise:  # closed at first (g ~ 0.05): a decoder without the gate is the same function
            self.gate = nn.Linear(dim, bins)
            nn.init.zeros_(self.gate.weight)
            nn.init.constant_(self.gate.bias, -3.0)
            table = torch.rand(bins, self.NOISE_FRAMES, generator=torch.Generator().manual_seed(0))
            self.register_buffer("noise_phase", (2 * table - 1) * math.pi, persistent=False)
        self.pad = (self.n_fft - self.hop) // 2  # "same" padding: T frames -> T * hop samples
        self.lookahead_frames = math.ceil(self.pad / self.hop)
        self.receptive_frames = (kernel - 1) * (layers + 1)  # past frames a frame depends on

    @property
    def accumulates(self) -> bool:
        """Whether the phase is a running sum over frames (chunks then carry state)."""
        return self.frequency is not None

    def spectrum(self, emb: torch.Tensor, offset: int = 0,
                 anchor: tuple[int, torch.Tensor] | None = None) -> torch.Tensor:
        """Encodings [B, D, T] -> complex STFT frames [B, n_fft/2+1, T]; `offset`: the index
        of the first frame (for the phase reference and the noise table).

        Accumulated phase: `anchor` = (i, before) says that the running phase sum just before
        local frame i is `before` [B, F] (float64 radians; frames before i are counted back
        from it); None: (0, zeros), the start of the codes. `self.running` then holds the
        sum at every frame [B, F, T] (float64), for the next chunk's anchor."""
        x = self.embed(F.pad(emb, (self.kernel - 1, 0)))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        h = self.final_norm(x.transpose(1, 2))  # [B, T, dim]
        log_magnitude, phase = self.head(h).transpose(1, 2).chunk(2, dim=1)  # [B, F, T] each
        magnitude = log_magnitude.clamp(max=10.0).exp()  # bounded: no overflow early in training
        # no DC and nothing in the next bin (18.75 Hz at 24 kHz, n_fft 1280): inaudible, yet a
        # regression head puts energy there (an offset of a quarter of a bass note's level)
        magnitude = torch.cat([torch.zeros_like(magnitude[:, :self.SILENT_BINS]),
                               magnitude[:, self.SILENT_BINS:]], dim=1)
        if self.phase in ("reference", "accumulated"):
            bins = torch.arange(phase.shape[1], device=phase.device, dtype=torch.float64)
            frames = torch.arange(offset, offset + phase.shape[2], device=phase.device,
                                  dtype=torch.float64)
            # exact in float64 and taken modulo 2 pi, so a late frame gets no rounding drift
            steady = torch.remainder(2 * math.pi * self.hop / self.n_fft * bins[:, None]
                                     * frames[None], 2 * math.pi)
            phase = phase + steady.to(phase.dtype)
        if self.frequency is not None:
            deviation = 2.0 * torch.tanh(self.frequency(h)).transpose(1, 2)  # bins, [B, F, T]
            step = (2 * math.pi * self.hop / self.n_fft) * deviation.double()
            total = step.cumsum(dim=2)
            i, before = anchor if anchor is not None else (0, None)
            if i > 0:
                total = total - total[..., i - 1: i]
            if before is not None:
                total = total + before[..., None].to(total)
            self.running = torch.remainder(total, 2 * math.pi)
            running = self.running.to(phase.dtype)
        if self.gate is not None:
            frames = torch.arange(offset, offset + phase.shape[2], device=phase.device)
            noise = self.noise_phase[:, frames % self.NOISE_FRAMES]  # [F, T]
            phase = phase + torch.sigmoid(self.gate(h)).transpose(1, 2) * noise
        if self.frequency is not None:
            self.last_phase = phase + running  # for the phase-advance loss (losses.PhaseAdvance)
            phase = phase + (running.detach() if self.detach_running else running)
        else:
            self.last_phase = phase
        self.last_spectrum = torch.polar(magnitude, phase)  # for losses.FrameSpectrum
        return self.last_spectrum

    def istft(self, spec: torch.Tensor) -> torch.Tensor:
        """Complex frames [B, F, T] -> [B, 1, T * hop]: windowed inverse FFTs, overlap-added
        and divided by the window's squared envelope."""
        frames = torch.fft.irfft(spec, n=self.n_fft, dim=1) * self.window[:, None]  # [B, N, T]
        count = frames.shape[-1]
        length = (count - 1) * self.hop + self.n_fft
        out = F.fold(frames, (1, length), (1, self.n_fft), stride=(1, self.hop))  # [B,1,1,L]
        square = self.window.square()[None, :, None].expand(1, -1, count)
        envelope = F.fold(square, (1, length), (1, self.n_fft), stride=(1, self.hop))
        span = slice(self.pad, self.pad + count * self.hop)
        return (out[..., span] / envelope[..., span].clamp_min(1e-11)).flatten(1, 2)

    def forward(self, emb: torch.Tensor, offset: int = 0,
                anchor: tuple[int, torch.Tensor] | None = None) -> torch.Tensor:
        return self.istft(self.spectrum(emb, offset, anchor))
