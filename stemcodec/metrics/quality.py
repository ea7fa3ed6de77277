"""Codec quality: how close a reconstruction is to its reference.

    si_sdr           scale-invariant signal-to-distortion ratio in dB (higher is better)
    mel_distance     mean |log10 mel(ref) - log10 mel(est)|, 80 bands (lower is better)
    mrstft_distance  multi-resolution STFT distance: spectral convergence + log-magnitude L1,
                     averaged over three FFT sizes (lower is better)

All three take `[C, S]` (or `[S]`) tensors at one sample rate and score the mono downmix;
the estimate is cut or zero-padded to the reference's length.
"""

from __future__ import annotations

import torch

from .spectra import mel_power, mono, stft_magnitude

RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop)


def _pair(reference: torch.Tensor, estimate: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ref, est = mono(reference), mono(estimate)
    if est.shape[-1] >= ref.shape[-1]:
        return ref, est[: ref.shape[-1]]
    return ref, torch.nn.functional.pad(est, (0, ref.shape[-1] - est.shape[-1]))


def si_sdr(reference: torch.Tensor, estimate: torch.Tensor, eps: float = 1e-8) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), both signals made zero-mean."""
    ref, est = _pair(reference, estimate)
    ref, est = ref.double() - ref.double().mean(), est.double() - est.double().mean()
    target = (est @ ref) / (ref @ ref + eps) * ref
    noise = est - target
    return float(10 * torch.log10((target @ target + eps) / (noise @ noise + eps)))


def mel_distance(reference: torch.Tensor, estimate: torch.Tensor, rate: int, n_mels: int = 80,
                 n_fft: int = 1024, hop: int = 256) -> float:
    """Mean absolute difference of log10 mel power spectra (floored at 1e-5)."""
    ref, est = _pair(reference, estimate)
    a = mel_power(ref, rate, n_fft, hop, n_mels).clamp_min(1e-5).log10()
    b = mel_power(est, rate, n_fft, hop, n_mels).clamp_min(1e-5).log10()
    return float((a - b).abs().mean())


def mrstft_distance(reference: torch.Tensor, estimate: torch.Tensor,
                    resolutions: tuple[tuple[int, int], ...] = RESOLUTIONS) -> float:
    """Spectral convergence plus log-magnitude L1 (magnitudes floored at 1e-5, -100 dB),
    averaged over `resolutions` (n_fft, hop), as in Parallel WaveGAN / auraloss."""
    ref, est = _pair(reference, estimate)
    total = 0.0
    for n_fft, hop in resolutions:
        a = stft_magnitude(ref, n_fft, hop).clamp_min(1e-5)
        b = stft_magnitude(est, n_fft, hop).clamp_min(1e-5)
        convergence = torch.linalg.norm(a - b) / torch.linalg.norm(a)
        log_l1 = (a.log() - b.log()).abs().mean()
        total += float(convergence + log_l1)
    return total / len(resolutions)
