"""The run folder both trainers write, and how a run in it resumes.

    OUT/train_config.json                the config the run was started (or last resumed) with
    OUT/model.safetensors + config.json  the latest model, exported by the trainer's `export`
    OUT/checkpoints/step_XXXXXXX/        accelerate's save_state + progress.json (last few kept)
    OUT/log.jsonl, OUT/logs/             losses and validation (JSON lines, TensorBoard)

A checkpoint is written to `.tmp_step_XXXXXXX` and renamed when complete, so the latest
checkpoint (the last with progress.json) is always whole.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from accelerate import Accelerator

from ..config import to_dict
from ..errors import UserError
from .progress import Progress

logger = logging.getLogger(__name__)

TRAIN_CONFIG = "train_config.json"
LOG = "log.jsonl"


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint of the run folder `out`, or None."""
    folder = out / "checkpoints"
    done = sorted(p for p in folder.glob("step_*") if (p / "progress.json").is_file()) \
        if folder.is_dir() else []
    return done[-1] if done else None


def rotate(folder: Path, keep_last: int) -> None:
    """Delete all but the newest `keep_last` (at least one) checkpoints in `folder`."""
    for old in sorted(folder.glob("step_*"))[: -max(1, keep_last)]:
        shutil.rmtree(old, ignore_errors=True)


def save_checkpoint(accelerator: Accelerator, out: Path, step: int, keep_last: int,
                    export: Callable[[Path], None], export_inside: bool = False) -> Path:
    """Full state (accelerate's save_state, registered objects included) to a temporary
    folder, renamed when complete; then `export(out)` writes the model, and the oldest
    checkpoints beyond keep_last go. export_inside: the checkpoint keeps its own model/ too."""
    final = out / "checkpoints" / f"step_{step:07d}"
    tmp = final.with_name(f".tmp_{final.name}")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        if export_inside:
            export(tmp / "model")
        (tmp / "progress.json").write_text(json.dumps({"step": step}) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        export(out)
        rotate(out / "checkpoints", keep_last)
    accelerator.wait_for_everyone()
    return final


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the dotted keys a user writes as overrides."""
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(flatten(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v
    return flat


def check_resume(out: Path, cfg: Any, keys: Sequence[str], unordered: Sequence[str] = (),
                 defaults: dict[str, Any] | None = None,
                 derived: dict[str, Callable[[dict[str, Any]], Any]] | None = None) -> None:
    """A run folder with a checkpoint resumes only with the settings it was started with, for
    the dotted `keys` (a section stands for every key in it): else a one-line UserError
    naming the first that differs, before anything in the folder is touched. `unordered`:
    list settings whose order means nothing (freeze). `defaults`: dotted settings added
    since older runs were started, and the value those runs had without them. `derived`:
    properties of the (flattened) config that decide what a checkpoint holds, e.g. whether an
    EMA is saved, named for the error line."""
    saved = out / TRAIN_CONFIG
    if not saved.is_file() or latest_checkpoint(out) is None:
        return
    old = {**(defaults or {}), **flatten(json.loads(saved.read_text()))}
    new = flatten(to_dict(cfg))
    for key in keys:
        for name in sorted({k for k in (*old, *new) if k == key or k.startswith(key + ".")}):
            a, b = old.get(name), new.get(name)
            if name in unordered:
                a, b = sorted(a or []), sorted(b or [])
            if a != b:
                raise UserError(f"{out} was trained with {name}={old.get(name)!r}, not "
                                f"{new.get(name)!r}; keep it or use another out folder")
    for name, of in (derived or {}).items():
        if of(old) != of(new):
            raise UserError(f"{out} was trained with {name} {of(old)}, now {of(new)}: its "
                            "checkpoint holds other state; keep it or use another out folder")


def restore(accelerator: Accelerator, checkpoint: Path | None, progress: Progress) -> None:
    """Load a checkpoint's state into everything prepared and registered (if there is one)."""
    if checkpoint is not None:
        accelerator.load_state(str(checkpoint))
        logger.info("resumed from %s (step %d)", checkpoint, progress.step)


def begin(accelerator: Accelerator, out: Path, cfg: Any, project: str, step: int = 0) -> None:
    """The run folder, its train_config.json and the trackers, once the run goes on from
    `step`: log.jsonl lines of later steps (written after the checkpoint it resumes from) go,
    so the log holds each step once."""
    out.mkdir(parents=True, exist_ok=True)
    config = to_dict(cfg)
    if accelerator.is_main_process:
        (out / TRAIN_CONFIG).write_text(json.dumps(config, indent=2) + "\n")
        log = out / LOG
        if log.is_file():
            kept = [line for line in log.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= step]
            tmp = log.with_name(f".{LOG}.tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, log)
    # trackers take scalars only
    accelerator.init_trackers(project, config={
        k: v if isinstance(v, (int, float, str, bool)) else str(v)
        for k, v in flatten(config).items()})


def append_log(accelerator: Accelerator, out: Path, record: dict[str, Any]) -> None:
    """A plain JSON-lines log beside TensorBoard's, easy to read in tests and scripts."""
    if accelerator.is_main_process:
        with open(out / LOG, "a") as handle:
            handle.write(json.dumps(record) + "\n")
