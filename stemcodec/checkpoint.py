"""Checkpoints as a folder: `model.safetensors` + `config.json`, written atomically.

`save_pretrained(dir, state_dict, config)` / `load_pretrained(dir)`; bundled defaults live
in `stemcodec/assets/<name>/` and are found with `bundled(name)`.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .errors import UserError
from .files import temporary_beside

WEIGHTS = "model.safetensors"
CONFIG = "config.json"
ASSETS = Path(__file__).parent / "assets"


class CheckpointError(UserError):
    pass


def save_pretrained(directory: str | os.PathLike, state_dict: dict[str, torch.Tensor],
                    config: dict[str, Any]) -> Path:
    """Write `model.safetensors` and `config.json` into `directory` (other files are left alone).

    Each file goes to a temporary name first and is renamed into place, weights before config,
    so a reader never sees half a file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    fd, tmp = temporary_beside(directory / WEIGHTS)
    os.close(fd)
    try:
        save_file(tensors, tmp)
        os.replace(tmp, directory / WEIGHTS)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fd, tmp = temporary_beside(directory / CONFIG)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, directory / CONFIG)
    return directory


def load_pretrained(directory: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read `(state_dict, config)` from a checkpoint folder; one-line error when it is not one."""
    directory = Path(directory)
    weights, config = directory / WEIGHTS, directory / CONFIG
    if not weights.is_file() or not config.is_file():
        raise CheckpointError(
            f"{directory} is not a stemcodec checkpoint (needs {WEIGHTS} and {CONFIG})"
        )
    try:
        cfg = json.loads(config.read_text())
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{config} is not valid JSON ({exc.msg})") from None
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"{weights} is not a readable safetensors file ({exc})") from None
    return state, cfg


def state_hash(state_dict: dict[str, torch.Tensor]) -> str:
    """sha256 over names, shapes, dtypes and bytes of a state dict: a stable weights id."""
    sha = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().cpu().contiguous()
        sha.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        sha.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return sha.hexdigest()


def file_sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            sha.update(block)
    return sha.hexdigest()


def copy_pretrained(source: str | os.PathLike, target: str | os.PathLike,
                    half: bool = False) -> Path:
    """Copy a checkpoint folder's weights and config (never training state) into `target`;
    `half` stores floating-point weights as float16, half the bytes (loading casts them back
    to the model's float32), for bundled generators. Returns `target`."""
    state, config = load_pretrained(source)
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    return save_pretrained(target, state, config)


def bundled(name: str) -> Path | None:
    """Path of a bundled default model folder in `stemcodec/assets/`, or None if not shipped."""
    path = ASSETS / name
    return path if (path / WEIGHTS).is_file() and (path / CONFIG).is_file() else None
