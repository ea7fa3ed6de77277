"""The official EnCodec models: weights found in the torch hub cache or a folder, their
checksum (the hex in the file name) verified before anything unpickles them."""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch
from encodec import EncodecModel

from ..checkpoint import file_sha256, state_hash
from .mini import check_bandwidth, token_hash
from .wrapper import Codec, CodecError

OFFICIAL = {
    "encodec_24khz": {"file": "encodec_24khz-d7cc33bc.th", "bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0],
                      "default": 6.0},
    "encodec_48khz": {"file": "encodec_48khz-7e698e3e.th", "bandwidths": [3.0, 6.0, 12.0, 24.0],
                      "default": 6.0},
}
DOWNLOAD_ROOT = "https://dl.fbaipublicfiles.com/encodec/v0/"


def hub_checkpoints() -> Path:
    """Where torch.hub (and so `encodec`) keeps downloaded weights."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_official_weights(name: str, repository: str | os.PathLike | None = None) -> Path:
    """The weights file of an official model in `repository` (else the torch hub cache): its
    official name, or any `<name>-<hex>.th` (8+ hex digits) whose sha256 starts with `<hex>`.
    The checksum is verified here, before anything unpickles the file."""
    expected = OFFICIAL[name]["file"]
    folder = Path(repository) if repository is not None else hub_checkpoints()
    if repository is not None and not folder.is_dir():
        raise CodecError(f"--codec-repo {folder} is not a folder (it should hold {expected})")
    candidates = [folder / expected] + sorted(set(folder.glob(f"{name}-*.th")) - {folder / expected})
    for path in candidates:
        match = re.fullmatch(rf"{name}-([0-9a-f]{{8,64}})\.th", path.name)
        if not match or not path.is_file():
            continue
        checksum = match.group(1)
        actual = file_sha256(path)[: len(checksum)]
        if actual != checksum:
            raise CodecError(f"{path}: checksum mismatch (expected {checksum} from the name, "
                             f"got {actual}); the file is corrupt or not {name}: download it again")
        return path
    raise CodecError(f"missing EnCodec weights {expected} (looked in {folder}); download "
                     f"{DOWNLOAD_ROOT}{expected} into {hub_checkpoints()} or into a folder "
                     "given with --codec-repo DIR")


def official_model(name: str) -> EncodecModel:
    """The architecture of `EncodecModel.encodec_model_{24,48}khz(pretrained=False)`, unnamed
    segments: an official state dict fits it exactly."""
    bandwidths = OFFICIAL[name]["bandwidths"]
    if name == "encodec_24khz":
        return EncodecModel._get_model(bandwidths, 24000, 1, causal=True, model_norm="weight_norm",
                                       audio_normalize=False, name=name)
    # trained with normalize=True, segment=1 s; Codec(unit_rms=True) stands in (see Codec)
    return EncodecModel._get_model(bandwidths, 48000, 2, causal=False,
                                   model_norm="time_group_norm", audio_normalize=True,
                                   segment=None, name=name)


def load_official(name: str, bandwidth: float | None, repository) -> Codec:
    spec = OFFICIAL[name]
    bandwidth = spec["default"] if bandwidth is None else bandwidth
    check_bandwidth(name, bandwidth, spec["bandwidths"])
    path = find_official_weights(name, repository)
    model = official_model(name)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict):
            raise ValueError(f"holds a {type(state).__name__}, not a state dict")
        model.load_state_dict(state)
    except (RuntimeError, OSError, ValueError, EOFError, pickle.UnpicklingError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise CodecError(f"{path} is not a usable {name} state dict ({reason})") from None
    state = model.state_dict()
    return Codec(model, name, bandwidth, token_hash(state), unit_rms=(name == "encodec_48khz"),
                 legacy_hash=state_hash(state))
