"""Opus as the reference codec: a round trip through `ffmpeg -c:a libopus -b:a <N>k`.

ffmpeg runs as a subprocess on temporary files; the decoded audio comes back at the input's
rate and channel count, cut or padded to the input's length (ffmpeg drops Opus's pre-skip,
so the two line up sample for sample).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from ..errors import UserError

HINT = "install ffmpeg built with libopus (Debian: apt-get install ffmpeg)"


def _ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        raise UserError(f"the ffmpeg program is not on PATH: {HINT}")
    proc = subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        message = lines[-1][:160] if lines else f"exit code {proc.returncode}"
        if "libopus" in proc.stderr and "Unknown encoder" in proc.stderr:
            message = f"ffmpeg has no libopus encoder: {HINT}"
        raise UserError(f"ffmpeg failed: {message}")


def opus_roundtrip(wav: torch.Tensor, rate: int, bitrate_kbps: float = 6.0) -> torch.Tensor:
    """Encode `[C, S]` with Opus at `bitrate_kbps` and decode it again -> `[C, S]` float32."""
    if bitrate_kbps <= 0:
        raise UserError(f"Opus bitrate must be positive, got {bitrate_kbps:g} kbps")
    channels, length = wav.shape
    with tempfile.TemporaryDirectory(prefix="stemcodec-opus-") as tmp:
        src, coded, out = Path(tmp, "in.wav"), Path(tmp, "coded.opus"), Path(tmp, "out.wav")
        sf.write(src, wav.detach().cpu().float().numpy().T, rate, subtype="FLOAT")
        _ffmpeg("-i", str(src), "-c:a", "libopus", "-b:a", f"{bitrate_kbps * 1000:.0f}",
                str(coded))
        _ffmpeg("-i", str(coded), "-ar", str(rate), "-ac", str(channels), "-c:a", "pcm_f32le",
                str(out))
        data, _ = sf.read(out, dtype="float32", always_2d=True)
    decoded = torch.from_numpy(np.ascontiguousarray(data.T))  # [C, S']
    if decoded.shape[-1] >= length:
        return decoded[:, :length]
    return torch.nn.functional.pad(decoded, (0, length - decoded.shape[-1]))
