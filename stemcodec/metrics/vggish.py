"""VGGish embeddings (Hershey et al. 2017), the embedding of the Fréchet Audio Distance, for
users who have its weights: the PyTorch port's file `vggish-10086976.pth` (torchvggish, a
state dict), found in the torch hub cache (`<hub>/checkpoints/`) or given as a path.

Nothing is downloaded. As with EnCodec's weights, a file named `vggish-<hex>.pth` has its
sha256 checked against `<hex>` before it is read, and it is read as tensors only
(`torch.load(weights_only=True)`), never unpickled into objects.

The front end is VGGish's: 16 kHz mono, 25 ms Hann windows every 10 ms, 64 mel bands (HTK,
125-7500 Hz) of the magnitude spectrum, log(mel + 0.01), patches of 96 frames (0.96 s). One
patch per second of audio gives one 128-value embedding per second, the layout of the other
per-second embeddings (stemcodec.metrics.seconds). The PCA and 8-bit quantisation of the
TensorFlow release are left out: FAD compares the raw embeddings' statistics.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

import torch
import torchaudio.functional as AF
from torch import nn

from ..audio import resample
from ..checkpoint import file_sha256
from ..errors import UserError

RATE = 16000
FILE = "vggish-10086976.pth"
URL = "https://github.com/harritaylor/torchvggish/releases/download/v0.1/" + FILE
PATCH = 96  # frames of 10 ms
BANDS = 64


class VGGishError(UserError):
    """Missing, corrupt or foreign VGGish weights."""


class VGGish(nn.Module):
    """The VGGish network in torchvggish's layout (its state dict loads as is): log-mel
    patches `[N, 1, 96, 64]` -> embeddings `[N, 128]`."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 1
        for block in ([64], [128], [256, 256], [512, 512]):
            for width in block:
                layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(inplace=True)]
                channels = width
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        self.embeddings = nn.Sequential(
            nn.Linear(512 * 4 * 6, 4096), nn.ReLU(inplace=True), nn.Linear(4096, 4096),
            nn.ReLU(inplace=True), nn.Linear(4096, 128), nn.ReLU(inplace=True))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        x = self.features(patches)  # [N, 512, 6, 4]
        x = x.permute(0, 2, 3, 1).flatten(1)  # channels last, as the TensorFlow original
        return self.embeddings(x)


@functools.lru_cache(maxsize=1)
def _mel_matrix() -> torch.Tensor:
    return AF.melscale_fbanks(257, 125.0, 7500.0, BANDS, RATE, mel_scale="htk")  # [257, 64]


def log_mel_patches(segments: torch.Tensor, rate: int) -> torch.Tensor:
    """Mono one-second segments `[N, L]` at `rate` -> VGGish patches `[N, 1, 96, 64]`."""
    x = resample(segments.float().cpu(), rate, RATE)
    x = torch.nn.functional.pad(x, (0, max(0, 400 + 160 * (PATCH - 1) - x.shape[-1])))
    spec = torch.stft(x, 512, 160, 400, torch.hann_window(400, periodic=True), center=False,
                      return_complex=True).abs()  # [N, 257, frames]
    mel = torch.einsum("nft,fm->ntm", spec, _mel_matrix())
    return (mel[:, :PATCH] + 0.01).log()[:, None]


def find_weights(path: str | os.PathLike | None = None) -> Path:
    """`path`, or the torch hub cache's `vggish-<hex>.pth`; checksum verified from the name."""
    if path is not None:
        candidates = [Path(path)]
        if not candidates[0].is_file():
            raise VGGishError(f"--vggish {path}: no such file (it should be {FILE})")
    else:
        folder = Path(torch.hub.get_dir()) / "checkpoints"
        candidates = [folder / FILE] + sorted(set(folder.glob("vggish-*.pth")) - {folder / FILE})
        candidates = [c for c in candidates if c.is_file()]
        if not candidates:
            raise VGGishError(f"missing VGGish weights {FILE} (looked in {folder}); download "
                              f"{URL} there or give the file with --vggish FILE")
    found = candidates[0]
    match = re.fullmatch(r"vggish-([0-9a-f]{8,64})\.pth", found.name)
    if match:
        actual = file_sha256(found)[: len(match.group(1))]
        if actual != match.group(1):
            raise VGGishError(f"{found}: checksum mismatch (expected {match.group(1)} from the "
                              f"name, got {actual}); the file is corrupt: download it again")
    return found


def load_vggish(path: str | os.PathLike | None = None) -> VGGish:
    """The VGGish network with the weights of `find_weights(path)`, in eval mode."""
    found = find_weights(path)
    model = VGGish()
    try:
        state = torch.load(found, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise VGGishError(f"{found} is not a VGGish state dict ({reason})") from None
    return model.eval()


@torch.no_grad()
def vggish_embeddings(model: VGGish, segments: torch.Tensor, rate: int,
                      batch: int = 64) -> torch.Tensor:
    """One-second mono segments `[N, L]` -> VGGish embeddings `[N, 128]`."""
    if segments.shape[0] == 0:
        return torch.zeros(0, 128)
    patches = log_mel_patches(segments, rate)
    return torch.cat([model(patches[i: i + batch]) for i in range(0, len(patches), batch)])
