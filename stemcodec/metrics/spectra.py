"""Spectral front-ends shared by the metrics: mono downmix, STFT magnitude, mel spectra.

Waveforms come in as `[C, S]` or `[S]` float tensors; everything here works on the mono
downmix and returns float32 tensors laid out `[F, T]` (bins or bands, frames).
"""

from __future__ import annotations

import functools

import torch
import torchaudio.functional as AF


def mono(wav: torch.Tensor) -> torch.Tensor:
    """`[C, S]` or `[S]` -> `[S]` float32 (mean of the channels)."""
    wav = wav.detach().float().cpu()
    return wav.mean(dim=0) if wav.dim() == 2 else wav


@functools.lru_cache(maxsize=16)
def _window(n_fft: int) -> torch.Tensor:
    return torch.hann_window(n_fft)


def magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int | None = None) -> torch.Tensor:
    """|STFT| of signals `[..., S]` -> `[..., n_fft // 2 + 1, T]`, centred frames, Hann window;
    differentiable (the codec losses use it too)."""
    win = win or n_fft
    if x.shape[-1] < n_fft:  # reflect padding needs a signal longer than half a window
        x = torch.nn.functional.pad(x, (0, n_fft - x.shape[-1]))
    window = _window(win).to(x.device)
    lead = x.shape[:-1]
    spec = torch.stft(x.reshape(-1, x.shape[-1]).float(), n_fft, hop, win, window, center=True,
                      return_complex=True)
    return spec.abs().reshape(*lead, *spec.shape[-2:])


def stft_magnitude(wav: torch.Tensor, n_fft: int, hop: int, win: int | None = None) -> torch.Tensor:
    """|STFT| of the mono downmix: `[n_fft // 2 + 1, T]`, centred frames, Hann window."""
    return magnitude(mono(wav), n_fft, hop, win)


@functools.lru_cache(maxsize=32)
def mel_filters(rate: int, n_fft: int, n_mels: int, f_min: float = 0.0,
                f_max: float | None = None) -> torch.Tensor:
    """Slaney-normalised mel filterbank `[n_fft // 2 + 1, n_mels]` (HTK mel scale)."""
    return AF.melscale_fbanks(n_fft // 2 + 1, f_min, f_max or rate / 2, n_mels, rate,
                              norm="slaney", mel_scale="htk")


def mel_power(wav: torch.Tensor, rate: int, n_fft: int = 1024, hop: int = 256,
              n_mels: int = 64, f_min: float = 0.0, f_max: float | None = None) -> torch.Tensor:
    """Mel power spectrogram `[n_mels, T]` of the mono downmix."""
    power = stft_magnitude(wav, n_fft, hop).pow(2)  # [F, T]
    return mel_filters(rate, n_fft, n_mels, f_min, f_max).T @ power  # [n_mels, T]


def log_mel(wav: torch.Tensor, rate: int, n_fft: int = 1024, hop: int = 256, n_mels: int = 64,
            f_min: float = 0.0, f_max: float | None = None, floor: float = 1e-10) -> torch.Tensor:
    """Natural-log mel power `[n_mels, T]`, floored at `floor` (-230 dB: silence stays finite)."""
    return mel_power(wav, rate, n_fft, hop, n_mels, f_min, f_max).clamp_min(floor).log()
