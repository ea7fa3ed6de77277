"""The losses our codecs train with (EnCodec's recipe, plus linear-frequency resolution).

    MultiScaleMel        L1 + L2 of log10 mel magnitudes over STFT sizes 2^6..2^11 (EnCodec)
    MultiResolutionSTFT  spectral convergence + log-magnitude L1 on linear frequency, windows
                         512..4096 at 24 kHz: long enough to resolve a bass note's harmonics,
                         which 64 mel bands (about 90 Hz wide at 500 Hz) cannot
    LogFrequencySTFT     L1 + L2 of log magnitudes in bands equally spaced in log frequency (24
                         per octave): every octave weighs the same, the bass's included
    PhaseAdvance         how far each bin's phase advance from frame to frame (its frequency)
                         is from the reference's, weighted by the reference's magnitude: the
                         pitch of a partial directly, where magnitude losses see it only
                         through a window's resolution
    FrameSpectrum        an iSTFT decoder's own frames against the reference analysed on the
                         same frames, before overlap-add: log magnitude (the shape of each
                         partial's main lobe) and the phase step from bin to bin (whether a
                         partial's bins agree, so that overlap-add does not cancel them)
    hinge_discriminator / hinge_generator / feature_matching   the MS-STFT discriminator's
    Balancer             EnCodec's loss balancer

One spectral front-end: the STFT magnitudes and mel filters of stemcodec.metrics.spectra.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics.spectra import magnitude, mel_filters


class MultiScaleMel(nn.Module):
    """Mean over STFT sizes n_fft (hop n_fft/4) of L1 + L2 between log10 mel magnitudes,
    the reconstruction loss of the EnCodec paper (scales 2^5..2^11 there)."""

    def __init__(self, rate: int, scales: Sequence[int], n_mels: int = 64):
        super().__init__()
        self.scales = [int(n) for n in scales]
        for n_fft in self.scales:
            with warnings.catch_warnings():  # the smallest FFTs leave some mel bands empty
                warnings.simplefilter("ignore")
                fbank = mel_filters(rate, n_fft, n_mels)  # [F, n_mels]
            self.register_buffer(f"fbank_{n_fft}", fbank.clone(), persistent=False)

    def log_mel(self, wav: torch.Tensor, n_fft: int) -> torch.Tensor:
        """wav [B, 1, S] -> log10 mel magnitude [B, n_mels, frames]."""
        spec = magnitude(wav.flatten(0, 1), n_fft, n_fft // 4)  # [B, F, frames]
        mel = torch.einsum("bft,fm->bmt", spec, getattr(self, f"fbank_{n_fft}"))
        return mel.clamp_min(1e-5).log10()

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for n_fft in self.scales:
            a, b = self.log_mel(estimate, n_fft), self.log_mel(reference, n_fft)
            total = total + F.l1_loss(a, b) + F.mse_loss(a, b)
        return total / len(self.scales)


class MultiResolutionSTFT(nn.Module):
    """Mean over window sizes (hop window/4) of spectral convergence (the relative Frobenius
    error of the magnitudes: led by the strong partials, i.e. the notes) plus the L1 of log
    magnitudes (floored at 1e-5: every bin counts, noise floor included)."""

    def __init__(self, windows: Sequence[int] = (512, 1024, 2048, 4096)):
        super().__init__()
        self.windows = [int(n) for n in windows]

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for n_fft in self.windows:
            a = magnitude(estimate.flatten(0, 1), n_fft, n_fft // 4)  # [B, F, frames]
            b = magnitude(reference.flatten(0, 1), n_fft, n_fft // 4)
            convergence = (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-7)
            log_l1 = F.l1_loss(a.clamp_min(1e-5).log(), b.clamp_min(1e-5).log())
            total = total + convergence.mean() + log_l1
        return total / len(self.windows)


def log_frequency_filters(rate: int, n_fft: int, per_octave: int = 24, f_min: float = 32.7,
                          f_max: float | None = None) -> torch.Tensor:
    """Triangular bands `[n_fft // 2 + 1, bands]` equally spaced in log frequency (`per_octave`
    per octave from f_min, C1), each at least two FFT bins wide where they would be narrower,
    each summing to 1: a constant-Q view made of an STFT."""
    f_max = f_max or rate / 2 * 0.95
    bands = int(math.floor(per_octave * math.log2(f_max / f_min)))
    centres = f_min * 2.0 ** (torch.arange(bands + 2, dtype=torch.float64) / per_octave)
    freqs = torch.arange(n_fft // 2 + 1, dtype=torch.float64) * rate / n_fft
    step = rate / n_fft
    out = torch.zeros(freqs.shape[0], bands, dtype=torch.float64)
    for b in range(bands):
        lo, mid, hi = centres[b], centres[b + 1], centres[b + 2]
        lo, hi = min(lo, mid - 2 * step), max(hi, mid + 2 * step)
        rise = (freqs - lo) / (mid - lo)
        fall = (hi - freqs) / (hi - mid)
        out[:, b] = torch.minimum(rise, fall).clamp_min(0.0)
    return (out / out.sum(dim=0, keepdim=True).clamp_min(1e-12)).float()


class LogFrequencySTFT(nn.Module):
    """Mean over windows (hop window/4) of L1 + L2 between log10 magnitudes in bands equally
    spaced in log frequency (24 per octave from 32.7 Hz): every octave weighs the same, as it
    does to the ear, where a linear STFT gives the octave 55-110 Hz 2 % of its bins at 24 kHz
    and mel bands are nearly linear below 700 Hz. A bass note a semitone off moves a whole
    band here."""

    def __init__(self, rate: int, windows: Sequence[int] = (2048, 4096), per_octave: int = 24):
        super().__init__()
        self.windows = [int(n) for n in windows]
        for n_fft in self.windows:
            self.register_buffer(f"bands_{n_fft}", log_frequency_filters(rate, n_fft, per_octave),
                                 persistent=False)

    def log_bands(self, wav: torch.Tensor, n_fft: int) -> torch.Tensor:
        spec = magnitude(wav.flatten(0, 1), n_fft, n_fft // 4)  # [B, F, frames]
        bands = torch.einsum("bft,fm->bmt", spec, getattr(self, f"bands_{n_fft}"))
        return bands.clamp_min(1e-5).log10()

    def forward(self, estimate: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        total = estimate.new_zeros(())
        for n_fft in self.windows:
            a, b = self.log_bands(estimate, n_fft), self.log_bands(reference, n_fft)
            total = total + F.l1_loss(a, b) + F.mse_loss(a, b)
        return total / len(self.windows)


class PhaseAdvance(nn.Module):
    """Mean over bins and frames, weighted by the reference's magnitude, of 1 - cos(the
    difference between the estimate's and the reference's phase advance from one frame to the
    next). The estimate's phases are an iSTFT decoder's (`ISTFTDecoder.last_phase`, frames of
    n_fft centred on (t + 1/2) x hop); the reference is analysed on the same frames. A partial
    at the right frequency costs 0, a quarter of a bin off at this overlap costs 1 - cos(pi/8)
    of its weight; noise-like bins cost about 1 whatever is predicted, so they do not bias it."""

    def __init__(self, n_fft: int, hop: int, skip_bins: int = 2):
        super().__init__()
        self.n_fft, self.hop, self.skip_bins = int(n_fft), int(hop), int(skip_bins)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, phase: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        spec = frame_reference(reference, self.n_fft, self.hop, self.window, phase.shape[-1])
        advance = spec[..., 1:] * spec[..., :-1].conj()
        weight = advance.abs().sqrt()
        weight[:, : self.skip_bins] = 0.0
        error = 1.0 - torch.cos(phase[..., 1:] - phase[..., :-1] - advance.angle())
        per_item = (weight * error).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1e-9)
        return per_item.mean()


def frame_reference(reference: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor,
                    frames: int) -> torch.Tensor:
    """The reference [B, 1, S] analysed on an iSTFT decoder's frames: n_fft samples centred on
    (t + 1/2) x hop, phase referred to the frame's first sample as irfft has it: [B, F, T]."""
    pad = (n_fft - hop) // 2
    x = F.pad(reference.flatten(0, 1), (pad, pad))
    spec = torch.stft(x, n_fft, hop, window=window, center=False, return_complex=True)
    return spec[..., :frames]


class FrameSpectrum(nn.Module):
    """Two losses on an iSTFT decoder's complex frames (`ISTFTDecoder.last_spectrum`) against
    the reference on the same frames, before overlap-add mixes neighbouring frames:
        magnitude    spectral convergence + L1 of log magnitudes, floored at `floor` (0.03:
                     a partial of 1e-4 peak, -80 dBFS: what lies under it is not heard, and
                     with a floor of 1e-5 most bins of a frame are 100 dB down and take most
                     of a log loss's gradient)
        group_delay  1 - cos(the difference of the phase step from bin k to bin k + 1),
                     weighted by the reference's magnitude there
    Why: through the waveform, a partial whose bins have unrelated phases cancels itself in
    the overlap-add, and the losses only see a quieter, smeared tone; here each bin is told its
    level and its phase relative to its neighbours directly (as APNet trains its phase). The
    group delay is blind to a phase common to all bins, so the running phase's start is free."""

    def __init__(self, n_fft: int, hop: int, skip_bins: int = 2, floor: float = 0.03):
        super().__init__()
        self.n_fft, self.hop, self.skip_bins = int(n_fft), int(hop), int(skip_bins)
        self.floor = float(floor)
        self.register_buffer("window", torch.hann_window(self.n_fft), persistent=False)

    def forward(self, spectrum: torch.Tensor, reference: torch.Tensor) -> dict[str, torch.Tensor]:
        ref = frame_reference(reference, self.n_fft, self.hop, self.window, spectrum.shape[-1])
        a, b = spectrum.abs(), ref.abs()
        convergence = (a - b).flatten(1).norm(dim=1) / b.flatten(1).norm(dim=1).clamp_min(1e-7)
        log_l1 = F.l1_loss(a.clamp_min(self.floor).log(), b.clamp_min(self.floor).log())
        step_ref = ref[:, 1:] * ref[:, :-1].conj()  # [B, F-1, T]
        step = spectrum[:, 1:] * spectrum[:, :-1].conj()
        weight = step_ref.abs().sqrt()
        weight[:, : self.skip_bins] = 0.0
        # cos of the angle between the two steps, from the products: no angle() of a zero
        cos = (step * step_ref.conj()).real / (step.abs() * step_ref.abs()).clamp_min(1e-12)
        error = 1.0 - cos
        per_item = (weight * error).flatten(1).sum(1) / weight.flatten(1).sum(1).clamp_min(1e-9)
        return {"magnitude": convergence.mean() + log_l1, "group_delay": per_item.mean()}


def hinge_discriminator(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """Hinge loss of the discriminator, averaged over its scales."""
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for r, f in zip(real, fake)) / len(real)


def hinge_generator(fake: list[torch.Tensor]) -> torch.Tensor:
    return sum(F.relu(1 - f).mean() for f in fake) / len(fake)


def feature_matching(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between the discriminator's feature maps, each relative to the real map's mean |.|."""
    terms = [F.l1_loss(f, r) / (r.abs().mean() + 1e-8)
             for rs, fs in zip(real, fake) for r, f in zip(rs, fs)]
    return sum(terms) / len(terms)


class Balancer:
    """EnCodec's loss balancer: the gradient each loss sends into the decoded audio is scaled
    so that its norm (a bias-corrected EMA over steps) is weight / sum(weights) * total_norm;
    the losses' scales then no longer matter, only their weights. Saved with the training
    state (register_for_checkpointing)."""

    def __init__(self, weights: dict[str, float], total_norm: float = 1.0, decay: float = 0.999):
        self.weights, self.total_norm, self.decay = weights, total_norm, decay
        self.sums = {name: 0.0 for name in weights}
        self.count = 0.0

    def gradient(self, losses: dict[str, torch.Tensor], audio: torch.Tensor,
                 reduce=lambda t: t) -> torch.Tensor:
        """The combined gradient for `audio` (to backpropagate as (audio * grad).sum()).
        `reduce` averages the norms over processes."""
        grads = [torch.autograd.grad(losses[name], [audio], retain_graph=True)[0]
                 for name in self.weights]
        norms = reduce(torch.stack([g.flatten(1).norm(dim=1).mean() for g in grads]))  # [L]
        self.count = self.count * self.decay + 1
        total_weight = sum(self.weights.values())
        out = torch.zeros_like(audio)
        for (name, weight), grad, norm in zip(self.weights.items(), grads, norms.tolist()):
            self.sums[name] = self.sums[name] * self.decay + norm
            average = self.sums[name] / self.count
            out += grad * (self.total_norm * weight / total_weight / (average + 1e-12))
        return out

    def state_dict(self) -> dict:
        return {"sums": dict(self.sums), "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.sums, self.count = dict(state["sums"]), float(state["count"])
