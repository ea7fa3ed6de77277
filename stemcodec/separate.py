"""Demucs behind one small interface: `separate(wav[C, S]) -> {source: wav[C, S]}`.

Weights, offline only (nothing is downloaded):
  * demucs 4.1's safetensors format, preferred: a bag `<name>.yaml` (`models: [sig, ...]`) plus
    one `<sig>.safetensors` per model, from `repo` or the Hugging Face cache;
  * the legacy pickled `<sig>-<sha>.th` files, only from the torch hub cache or `repo`, and
    only after the sha256 prefix in the name matches the content.
Long files are separated in overlapping chunks (demucs.apply.apply_model), memory bounded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import torch
import yaml

from .checkpoint import file_sha256
from .errors import UserError

NAMES = ("htdemucs_6s", "htdemucs", "debug")
SIX_SOURCES = ["drums", "bass", "other", "vocals", "guitar", "piano"]


class SeparatorError(UserError):
    pass


class Separator:
    """A Demucs model (or bag of models) with the stemcodec interface."""

    def __init__(self, model, name: str):
        self.model = model.eval()
        self.name = name
        self.sources: list[str] = list(model.sources)
        self.sample_rate = int(model.samplerate)
        self.channels = int(model.audio_channels)

    def to(self, device: torch.device | str) -> Separator:
        self.model.to(device)
        return self

    @torch.inference_mode()
    def separate(self, wav: torch.Tensor, progress: bool = False) -> dict[str, torch.Tensor]:
        """wav [C, S] at `sample_rate` with `channels` -> one [C, S] per source."""
        from demucs.apply import apply_model
        if wav.dim() != 2 or wav.shape[0] != self.channels:
            raise ValueError(f"expected wav [{self.channels}, S], got {tuple(wav.shape)}")
        # normalised like demucs's own separate.py, and undone after
        ref = wav.mean(0)
        mean, std = ref.mean(), ref.std().clamp_min(1e-8)
        out = apply_model(self.model, ((wav - mean) / std)[None], shifts=0, split=True,
                          overlap=0.25, progress=progress)[0]
        out = out * std + mean
        return {name: out[i] for i, name in enumerate(self.sources)}

    @staticmethod
    def map_to_slots(stems: dict[str, torch.Tensor], slots: Sequence[str]) -> dict[str, torch.Tensor]:
        """Sources onto slots by name; a slot the model has no source for is left out."""
        return {slot: stems[slot] for slot in slots if slot in stems}


def _debug_model():
    from demucs.htdemucs import HTDemucs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        return HTDemucs(SIX_SOURCES, channels=8, depth=2, nfft=512, t_layers=1, t_heads=2,
                        segment=2, samplerate=44100, dconv_depth=1)


def _hf_cache_file(name: str, filename: str) -> Path | None:
    try:
        from demucs.hf import hf_repo_name
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    found = try_to_load_from_cache(f"adefossez/{hf_repo_name(name)}", filename)
    return Path(found) if isinstance(found, str) else None


def _decode(value):
    if isinstance(value, dict):
        if value.get("_type") == "fraction":
            return Fraction(value["numerator"], value["denominator"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def load_safetensors_model(path: Path):
    """One demucs model from safetensors; the class named in the file must be demucs's own."""
    import importlib

    from demucs.states import set_state
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    klass_name = meta.get("klass", "")
    if not re.fullmatch(r"demucs(\.\w+)+", klass_name):
        raise SeparatorError(f"{path} names class '{klass_name}', not a demucs model: refused")
    if "structure" in meta:
        raise SeparatorError(f"{path} holds a quantized model, which stemcodec does not load")
    module, cls = klass_name.rsplit(".", 1)
    klass = getattr(importlib.import_module(module), cls)
    model = klass(*_decode(json.loads(meta["args"])), **_decode(json.loads(meta["kwargs"])))
    set_state(model, tensors)
    return model


def load_th_model(path: Path):
    """A legacy pickled `<sig>-<sha>.th`, unpickled only once its checksum matches."""
    match = re.fullmatch(r"([0-9a-f]+)-([0-9a-f]+)\.th", path.name)
    if not match:
        raise SeparatorError(f"{path}: a pickled model needs its checksum in the name "
                             "(<sig>-<sha256 prefix>.th); refused")
    checksum = match.group(2)
    actual = file_sha256(path)[: len(checksum)]
    if actual != checksum:
        raise SeparatorError(f"{path}: checksum mismatch (name says {checksum}, content is "
                             f"{actual}); the file is corrupt: download it again")
    from demucs.states import load_model
    return load_model(path)


def _bag_yaml(name: str, folder: Path | None) -> Path | None:
    if folder is not None:
        path = folder / f"{name}.yaml"
        return path if path.is_file() else None
    cached = _hf_cache_file(name, f"{name}.yaml")
    if cached is not None:
        return cached
    import demucs
    shipped = Path(demucs.__file__).parent / "remote" / f"{name}.yaml"
    return shipped if shipped.is_file() else None


def load_separator(name: str = "htdemucs_6s", repo: str | os.PathLike | None = None,
                   device: torch.device | str = "cpu") -> Separator:
    """Load a Demucs separator by name from `repo` or the offline caches."""
    if name in ("debug", "demucs_unittest"):
        return Separator(_debug_model(), "debug").to(device)
    folder = Path(repo) if repo is not None else None
    if folder is not None and not folder.is_dir():
        raise SeparatorError(f"--demucs-repo {folder} is not a folder")
    bag_file = _bag_yaml(name, folder)
    if bag_file is None:
        if folder is None and name not in NAMES:
            raise SeparatorError(f"unknown separator '{name}'; use {', '.join(NAMES)} "
                                 "or --demucs-repo DIR holding <name>.yaml")
        raise SeparatorError(f"no bag file {name}.yaml in {folder}")
    bag = yaml.safe_load(bag_file.read_text()) or {}
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    models, searched = [], []
    for sig in bag.get("models", []):
        safetensors = (folder / f"{sig}.safetensors") if folder else \
            _hf_cache_file(name, f"{sig}.safetensors")
        if safetensors is not None and safetensors.is_file():
            models.append(load_safetensors_model(safetensors))
            continue
        legacy_dir = folder or hub
        legacy = sorted(legacy_dir.glob(f"{sig}-*.th")) + sorted(legacy_dir.glob(f"{sig}.th"))
        if legacy:
            models.append(load_th_model(legacy[0]))
            continue
        searched.append(sig)
    if searched:
        where = str(folder) if folder else f"the Hugging Face cache and {hub}"
        raise SeparatorError(
            f"missing Demucs weights for {name}: {', '.join(f'{s}.safetensors' for s in searched)}"
            f" (or {', '.join(f'{s}-<sha>.th' for s in searched)}) not found in {where}; on a "
            f"machine with internet run `python -m demucs -n {name} any.wav` once and copy the "
            "cache, or pass --demucs-repo DIR")
    if len(models) == 1 and not bag.get("weights"):
        model = models[0]
    else:
        from demucs.apply import BagOfModels
        model = BagOfModels(models, bag.get("weights"), bag.get("segment"))
    return Separator(model, name).to(device)
