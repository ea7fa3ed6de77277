"""Demucs behind one small interface: `separate(wav[C, S]) -> {source: wav[C, S]}`.

Weights, offline only (nothing is downloaded):
  * demucs 4.1's safetensors format, preferred: a bag `<name>.yaml` (`models: [sig, ...]`) plus
    one `<sig>.safetensors` per model, from `repo` or the Hugging Face cache;
  * the legacy pickled `<sig>-<sha>.th` files, only from the torch hub cache or `repo`, and
    only after the sha256 prefix in the name matches the content (a pickle runs code when it
    is read: the checksum is the gate; a `.th` without one is refused).
The bag yaml of the official names is also taken from demucs's own copy (demucs/remote), so a
folder holding only `955717e8-8726e21a.th` serves `htdemucs`.
Long files are separated in overlapping chunks (demucs.apply.apply_model), memory bounded.
"""

from __future__ import annotations

import json
import os
import pickle
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


class MissingWeightsError(SeparatorError):
    """A known separator whose weights are not on this machine."""


class Separator:
    """A Demucs model (or bag of models) with the stemcodec interface.

    `sources` are the model's own names, in its order: htdemucs_6s gives all six slots of the
    default vocabulary; htdemucs (4 stems) gives drums, bass, other, vocals, so the guitar and
    piano slots stay missing (their sound ends up in `other`).
    """

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
    def separate(self, wav: torch.Tensor, sample_rate: int | None = None,
                 progress: bool = False) -> dict[str, torch.Tensor]:
        """wav [C, S] at `sample_rate` with `channels` -> one [C, S] per source.

        Any length: apply_model cuts the mix into the model's segments with 25 % overlap,
        so memory is bounded. Wrong channels (or a `sample_rate` given and wrong): ValueError.
        """
        from demucs.apply import apply_model
        if wav.dim() != 2 or wav.shape[0] != self.channels:
            raise ValueError(f"expected wav [{self.channels}, S], got {tuple(wav.shape)}")
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise ValueError(f"{self.name} expects {self.sample_rate} Hz audio, got {sample_rate} Hz")
        device = next(self.model.parameters()).device
        wav = wav.to(device, torch.float32)
        # normalised like demucs's own separate.py (mono reference), and undone after
        ref = wav.mean(0).double()
        mean, std = normalisation(float(ref.sum()), float(ref.pow(2).sum()), ref.numel())
        mean, std = mean.to(device), std.to(device)
        out = apply_model(self.model, ((wav - mean) / std)[None], shifts=0, split=True,
                          overlap=0.25, progress=progress)[0]  # [N, C, S]
        out = out * std + mean
        return {name: out[i] for i, name in enumerate(self.sources)}

    @staticmethod
    def map_to_slots(stems: dict[str, torch.Tensor], slots: Sequence[str]) -> dict[str, torch.Tensor]:
        """Sources onto slots by name, in slot order; a slot with no source of its name is left
        out (with htdemucs: guitar and piano) and the caller treats it as missing."""
        return {slot: stems[slot] for slot in slots if slot in stems}


def normalisation(total: float, squares: float, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std (n - 1) of the mono mix from its sum and sum of squares, float64 sums
    taken to float32: the same from the whole tensor or summed block by block
    (stemcodec.blocks.separate)."""
    mean = total / count
    var = max(squares - total * mean, 0.0) / max(count - 1, 1)
    return (torch.tensor(mean, dtype=torch.float32),
            torch.tensor(var ** 0.5, dtype=torch.float32).clamp_min(1e-8))


def _debug_model():
    from demucs.htdemucs import HTDemucs
    # no cross-transformer (t_layers=0): at depth 2 it attends over 5500 time steps per 2 s
    # segment and made the test separator slower than real time (15.6 s for 10 s of audio on
    # one thread, 1.2 s without it); the real models keep theirs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1234)
        return HTDemucs(SIX_SOURCES, channels=8, depth=2, nfft=512, t_layers=0,
                        segment=2, samplerate=44100, dconv_depth=1)


def _hf_repo(name: str) -> str:
    from demucs.hf import hf_repo_name
    return f"adefossez/{hf_repo_name(name)}"


def _hf_cache_file(name: str, filename: str) -> Path | None:
    """A file of the model's Hugging Face repository if it is already cached; never downloads."""
    try:
        from huggingface_hub import try_to_load_from_cache
        found = try_to_load_from_cache(_hf_repo(name), filename)
    except (ImportError, ValueError):
        return None
    return Path(found) if isinstance(found, str) else None


def _hf_cache_dir() -> str:
    try:
        from huggingface_hub import constants
        return str(constants.HF_HUB_CACHE)
    except ImportError:
        return "the Hugging Face cache"


def _decode(value):
    """demucs.hf's json encoding of init arguments (fractions as {"_type": "fraction"})."""
    if isinstance(value, dict):
        if value.get("_type") == "fraction":
            return Fraction(value["numerator"], value["denominator"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _demucs_class(klass_name: str, path: Path):
    """The model class a file names, only if it is an nn.Module defined under `demucs.`."""
    import importlib
    if not re.fullmatch(r"demucs(\.\w+)+", klass_name or ""):
        raise SeparatorError(f"{path} names class '{klass_name}', not a demucs model: refused")
    module, cls = klass_name.rsplit(".", 1)
    try:
        klass = getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError):
        raise SeparatorError(f"{path} names class '{klass_name}', which this demucs "
                             "does not have") from None
    if not (isinstance(klass, type) and issubclass(klass, torch.nn.Module)):
        raise SeparatorError(f"{path} names '{klass_name}', not a demucs model: refused")
    return klass


def _build(package: dict, path: Path):
    from demucs.states import load_model
    try:
        return load_model(package)  # drops init kwargs this demucs version does not know
    except (RuntimeError, TypeError, KeyError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise SeparatorError(f"{path} does not build a {package['klass'].__name__} "
                             f"({reason})") from None


def load_safetensors_model(path: Path):
    """One demucs model from a demucs 4.1 safetensors file (class and init arguments as json
    metadata). The class must be demucs's own; quantized (packed) states are not supported."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    except (SafetensorError, OSError) as exc:
        raise SeparatorError(f"{path} is not a readable safetensors file ({exc})") from None
    klass = _demucs_class(meta.get("klass", ""), path)
    if "structure" in meta:
        raise SeparatorError(f"{path} holds a quantized model, which stemcodec does not load")
    try:
        args, kwargs = _decode(json.loads(meta["args"])), _decode(json.loads(meta["kwargs"]))
    except (KeyError, json.JSONDecodeError, TypeError):
        raise SeparatorError(f"{path} lacks readable args/kwargs metadata") from None
    return _build({"klass": klass, "args": args, "kwargs": kwargs, "state": tensors}, path)


def load_th_model(path: Path):
    """A legacy pickled `<sig>-<sha>.th` (demucs.states.serialize_model), unpickled only once
    the sha256 prefix in its name matches the content."""
    match = re.fullmatch(r"([0-9a-f]+)-([0-9a-f]{8,64})\.th", path.name)
    if not match:
        raise SeparatorError(f"{path}: a pickled model needs its checksum in the name "
                             "(<sig>-<sha256 prefix, 8+ hex>.th); refused")
    checksum = match.group(2)
    actual = file_sha256(path)[: len(checksum)]
    if actual != checksum:
        raise SeparatorError(f"{path}: checksum mismatch (expected {checksum} from the name, "
                             f"got {actual}); the file is corrupt: download it again")
    try:
        package = torch.load(path, map_location="cpu", weights_only=False)  # checksum verified
    except (RuntimeError, OSError, EOFError, pickle.UnpicklingError) as exc:
        raise SeparatorError(f"{path} is not a readable torch file ({exc})") from None
    if not isinstance(package, dict) or not {"klass", "args", "kwargs", "state"} <= set(package):
        raise SeparatorError(f"{path} is not a serialized demucs model")
    klass = package["klass"]
    _demucs_class(f"{getattr(klass, '__module__', '')}.{getattr(klass, '__name__', '')}", path)
    return _build(package, path)


def _shipped_yaml(name: str) -> Path | None:
    import demucs
    path = Path(demucs.__file__).parent / "remote" / f"{name}.yaml"
    return path if path.is_file() else None


def _bag_yaml(name: str, folder: Path | None) -> Path | None:
    """`<name>.yaml`: from `folder`, else the Hugging Face cache; else the copy shipped in
    demucs/remote (the official bags: htdemucs_6s -> 5c90dfd2, htdemucs -> 955717e8)."""
    if folder is not None and (folder / f"{name}.yaml").is_file():
        return folder / f"{name}.yaml"
    if folder is None:
        cached = _hf_cache_file(name, f"{name}.yaml")
        if cached is not None:
            return cached
    return _shipped_yaml(name)


def _load_sig(name: str, sig: str, folder: Path | None):
    """One model of a bag: `<sig>.safetensors` preferred, else a legacy `<sig>-<sha>.th`."""
    safetensors = (folder / f"{sig}.safetensors") if folder else \
        _hf_cache_file(name, f"{sig}.safetensors")
    if safetensors is not None and safetensors.is_file():
        return load_safetensors_model(safetensors)
    legacy_dir = folder or Path(torch.hub.get_dir()) / "checkpoints"
    legacy = sorted(legacy_dir.glob(f"{sig}-*.th")) + sorted(legacy_dir.glob(f"{sig}.th"))
    return load_th_model(legacy[0]) if legacy else None


def load_separator(name: str = "htdemucs_6s", repo: str | os.PathLike | None = None,
                   device: torch.device | str = "cpu") -> Separator:
    """Load a Demucs separator by name from `repo` or the offline caches; never downloads.

    Args:
        name: htdemucs_6s (6 stems), htdemucs (4 stems: no guitar or piano), debug (tiny,
            random, 6 sources), or any bag whose `<name>.yaml` is in `repo`.
        repo: a folder with `<name>.yaml` (optional for the official names) and per model
            `<sig>.safetensors` or `<sig>-<sha>.th`; default: the Hugging Face cache
            (safetensors) and the torch hub cache (legacy .th).
        device: where the model runs.
    Raises SeparatorError (one line) for unknown names, missing, corrupt or foreign weights.
    """
    if name in ("debug", "demucs_unittest"):
        return Separator(_debug_model(), "debug").to(device)
    folder = Path(repo) if repo is not None else None
    if folder is not None and not folder.is_dir():
        raise SeparatorError(f"--demucs-repo {folder} is not a folder")
    bag_file = _bag_yaml(name, folder)
    if bag_file is None:
        where = f" and no {name}.yaml in {folder}" if folder else ""
        raise SeparatorError(f"unknown separator '{name}'{where}; valid: {', '.join(NAMES)}, "
                             "or --demucs-repo DIR holding <name>.yaml")
    try:
        bag = yaml.safe_load(bag_file.read_text()) or {}
        sigs = [str(sig) for sig in bag["models"]]
    except (yaml.YAMLError, KeyError, TypeError):
        raise SeparatorError(f"{bag_file} is not a demucs bag (needs `models: [sig, ...]`)") from None
    models, missing = [], []
    for sig in sigs:
        model = _load_sig(name, sig, folder)
        if model is None:
            missing.append(sig)
        else:
            models.append(model)
    if missing:
        hub = Path(torch.hub.get_dir()) / "checkpoints"
        where = str(folder) if folder else f"{_hf_cache_dir()} ({_hf_repo(name)}) and {hub}"
        raise MissingWeightsError(
            f"missing Demucs weights for {name}: {', '.join(f'{s}.safetensors' for s in missing)}"
            f" (or {', '.join(f'{s}-<sha>.th' for s in missing)}) not found in {where}; on a "
            f"machine with internet run `python -m demucs -n {name} any.wav` once and copy the "
            "files, or put them in a folder given with --demucs-repo DIR")
    if len(models) == 1 and not bag.get("weights") and not bag.get("segment"):
        model = models[0]
    else:
        from demucs.apply import BagOfModels
        model = BagOfModels(models, bag.get("weights"), bag.get("segment"))
    return Separator(model, name).to(device)
