"""Train the multi-stream transformer on a token cache, with accelerate.

    accelerate launch train/train.py --config configs/mini.yaml data.cache=CACHE out=runs/mini
    accelerate launch train/train.py --config configs/mini.yaml out=runs/mini   # resumes

Reading order: config -> batches -> schedule -> evaluation -> checkpoints -> main loop.
The device, precision (bf16 on GPU) and number of processes come from `accelerate config`.
Run folder:
    OUT/model.safetensors + config.json   the latest model (from_pretrained(OUT) loads it)
    OUT/checkpoints/step_XXXXXXX/         full training state for resume (last few kept)
    OUT/logs/                             TensorBoard
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from stemcodec.config import load_config, to_dict
from stemcodec.corpus.cache import TokenCache
from stemcodec.corpus.dataset import DataConfig, WindowDataset
from stemcodec.errors import UserError, cli
from stemcodec.model import ModelConfig, MultiStreamTransformer, build_delay

logger = logging.getLogger("train")


# -- config ---------------------------------------------------------------------------------
@dataclass
class OptimConfig:
    lr: float = 3e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at the last step
    grad_clip: float = 1.0


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    out: str = "runs/mini"
    seed: int = 0
    steps: int = 5000  # optimizer steps
    batch_size: int = 16  # windows per process per micro-step
    grad_accum: int = 1
    ema_decay: float = 0.0  # 0 = no EMA; else the exported model is the EMA one
    log_every: int = 10
    eval_every: int = 500
    eval_batches: int = 50
    save_every: int = 500
    keep_last: int = 3
    codec_id: str | None = None  # if set, the cache must have been made with this codec
    stop_after: int | None = None  # stop (with a checkpoint) after this step: for tests/debug


# -- batches --------------------------------------------------------------------------------
class StepSampler(Sampler):
    """Batches of (epoch, index) as a pure function of (seed, step): exact resume, no skipping.

    Global batch g covers positions [g*B*W, (g+1)*B*W) of an endless sequence of seeded
    permutations; process `rank` of `world` takes its B of them.
    """

    def __init__(self, size: int, batch_size: int, seed: int, start_batch: int = 0,
                 rank: int = 0, world: int = 1):
        if size == 0:
            raise UserError("no training windows: the cache is empty or its songs are shorter "
                            "than data.window frames")
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.start_batch, self.rank, self.world = start_batch, rank, world

    def _perm(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        per_global = self.batch_size * self.world
        batch = self.start_batch
        cached_epoch, perm = -1, None
        while True:
            first = batch * per_global + self.rank * self.batch_size
            items = []
            for pos in range(first, first + self.batch_size):
                epoch, i = divmod(pos, self.size)
                if epoch != cached_epoch:
                    cached_epoch, perm = epoch, self._perm(epoch)
                items.append((epoch, int(perm[i])))
            yield items
            batch += 1

    def __len__(self) -> int:  # endless; DataLoader only needs a number
        return sys.maxsize


def training_tensors(batch: dict[str, torch.Tensor], special: int):
    """Delay-pattern inputs, targets and the loss mask of a batch of windows.

    Loss is taken on real tokens (not the special token) of present, non-given slots at
    frames inside the song.
    """
    codes = batch["codes"]  # [B, K, Q, T]
    B, K, Q, T = codes.shape
    seq = build_delay(codes, special)  # [B, K, Q, T+Q]
    frame_ok = batch["valid"][:, None, None, :].expand(B, K, Q, T).long()
    ok = build_delay(frame_ok, 0).bool()  # frame validity carried through the same delay
    slot_ok = (batch["present"] & ~batch["given"])[:, :, None, None]
    inputs, targets = seq[..., :-1], seq[..., 1:]
    mask = ok[..., 1:] & slot_ok
    return inputs, targets, mask


# -- schedule -------------------------------------------------------------------------------
def learning_rate(step: int, cfg: TrainConfig) -> float:
    """Linear warmup, then cosine to lr * min_lr_ratio at cfg.steps."""
    o = cfg.optim
    if step < o.warmup_steps:
        return o.lr * (step + 1) / o.warmup_steps
    progress = min(1.0, (step - o.warmup_steps) / max(1, cfg.steps - o.warmup_steps))
    return o.lr * (o.min_lr_ratio + (1 - o.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


class EMA:
    """Exponential moving average of the weights, saved with the training state."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.dtype.is_floating_point:
                self.shadow[k].lerp_(v.float(), 1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> dict:
        return dict(self.shadow)

    def load_state_dict(self, state: dict) -> None:
        self.shadow = {k: v.clone() for k, v in state.items()}


class Progress:
    """The step counter, saved with the training state."""

    def __init__(self):
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])


# -- evaluation -----------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model, loader, accelerator: Accelerator, cfg: TrainConfig, slots: list[str],
             special: int) -> dict[str, float]:
    """Validation cross-entropy overall, per slot and per codebook (summed over processes)."""
    model.eval()
    K, Q = len(slots), cfg.model.num_codebooks
    nll = torch.zeros(K, Q, device=accelerator.device, dtype=torch.float64)
    count = torch.zeros(K, Q, device=accelerator.device, dtype=torch.float64)
    for i, batch in enumerate(loader):
        if i >= cfg.eval_batches:
            break
        batch = {k: v.to(accelerator.device) for k, v in batch.items()}
        inputs, targets, mask = training_tensors(batch, special)
        logits = model(inputs, batch["instrument"], batch["present"])
        ce = MultiStreamTransformer.token_nll(logits, targets)
        nll += (ce * mask).sum(dim=(0, 3)).double()
        count += mask.sum(dim=(0, 3)).double()
    nll, count = accelerator.reduce(nll, "sum"), accelerator.reduce(count, "sum")
    model.train()
    if count.sum() == 0:
        return {}
    out = {"valid/loss": (nll.sum() / count.sum()).item()}
    for k, name in enumerate(slots):
        if count[k].sum() > 0:
            out[f"valid/loss_{name}"] = (nll[k].sum() / count[k].sum()).item()
    for q in range(Q):
        if count[:, q].sum() > 0:
            out[f"valid/loss_q{q}"] = (nll[:, q].sum() / count[:, q].sum()).item()
    return out


# -- checkpoints ----------------------------------------------------------------------------
def export_model(model: MultiStreamTransformer, state: dict, directory: Path, codec: dict,
                 data: DataConfig, instruments: list[str]) -> None:
    """The model as safetensors + config.json, loadable without this script. The "training"
    section tells generation the window the model learned (its sliding window), whether
    slots were dropped (what classifier-free guidance needs) and the instruments its data
    had (a vocabulary entry it never heard is refused, not generated as noise)."""
    from stemcodec.checkpoint import save_pretrained
    training = {"window": data.window, "slot_dropout": data.p_all_slots < 1.0,
                "instruments": list(instruments)}
    save_pretrained(directory, state, {**to_dict(model.config), "codec": codec,
                                       "training": training})


def latest_checkpoint(out: Path) -> Path | None:
    folder = out / "checkpoints"
    done = sorted(p for p in folder.glob("step_*") if (p / "progress.json").is_file()) \
        if folder.is_dir() else []
    return done[-1] if done else None


def save_checkpoint(accelerator: Accelerator, model, ema: EMA | None, progress: Progress,
                    cfg: TrainConfig, codec: dict, instruments: list[str]) -> Path:
    """Full state to a temporary folder, renamed when complete; the oldest beyond keep_last go."""
    out = Path(cfg.out)
    final = out / "checkpoints" / f"step_{progress.step:07d}"
    tmp = final.with_name(f".tmp_{final.name}")
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        weights = ema.shadow if ema is not None else unwrapped.state_dict()
        export_model(unwrapped, weights, tmp / "model", codec, cfg.data, instruments)
        (tmp / "progress.json").write_text(json.dumps({"step": progress.step}) + "\n")
        shutil.rmtree(final, ignore_errors=True)
        os.replace(tmp, final)
        export_model(unwrapped, weights, out, codec, cfg.data, instruments)
        for old in sorted((out / "checkpoints").glob("step_*"))[: -cfg.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


# -- main -----------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None) -> TrainConfig:
    p = argparse.ArgumentParser(
        prog="train/train.py", description="Train the multi-stream transformer (accelerate).",
        epilog="Overrides: key=value with dotted keys, e.g. optim.lr=1e-4 data.cache=cache")
    p.add_argument("--config", type=Path, default=None, help="YAML config (configs/*.yaml)")
    p.add_argument("overrides", nargs="*", help="key=value overrides")
    args = p.parse_args(argv)
    return load_config(TrainConfig, args.config, args.overrides)


@cli
def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # its per-file save lines
    out = Path(cfg.out)
    cache = TokenCache(cfg.data.cache)
    if cfg.codec_id is not None and cache.codec_id != cfg.codec_id:
        raise UserError(f"{cfg.data.cache} was made with codec {cache.codec_id}, the config "
                        f"expects {cfg.codec_id}; prepare the cache with that codec")
    saved = out / "config.json"
    if saved.is_file():
        old_codec = json.loads(saved.read_text()).get("codec", {}).get("id")
        if old_codec and old_codec != cache.codec_id:
            raise UserError(f"{out} was trained on codec {old_codec} tokens, but {cfg.data.cache}"
                            f" holds {cache.codec_id} tokens; use a cache of that codec or "
                            "another out folder")
    # the token layout is a property of the data, not a choice
    cfg.model.num_codebooks = int(cache.codec["num_codebooks"])
    cfg.model.cardinality = int(cache.codec["cardinality"])
    if cfg.model.mode == "stems":
        cfg.model.max_slots = max(cfg.model.max_slots, len(cache.slots))

    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, log_with="tensorboard",
                              project_dir=str(out / "logs"))
    set_seed(cfg.seed)
    model = MultiStreamTransformer(cfg.model)
    special = cfg.model.cardinality
    vocab = cfg.model.vocabulary
    # the instruments the data holds (a mix model's one stream stands for its whole vocabulary)
    trained = [n for n in vocab if n in cache.slots] if cfg.model.mode == "stems" else list(vocab)
    train_set = WindowDataset(cache, vocab, cfg.data, "train", cfg.seed, cfg.model.mode)
    valid_set = WindowDataset(cache, vocab, cfg.data, "valid", cfg.seed, cfg.model.mode)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.optim.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=cfg.optim.lr, betas=cfg.optim.betas)
    model, optimizer = accelerator.prepare(model, optimizer)
    ema = EMA(accelerator.unwrap_model(model), cfg.ema_decay) if cfg.ema_decay > 0 else None
    progress = Progress()
    accelerator.register_for_checkpointing(progress)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    resume = latest_checkpoint(out)
    if resume is not None:
        accelerator.load_state(str(resume))
        logger.info("resumed from %s (step %d)", resume, progress.step)
    if progress.step >= cfg.steps:
        accelerator.print(f"{out} already trained for {progress.step} steps (steps={cfg.steps})")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    if accelerator.is_main_process:
        (out / "train_config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    accelerator.init_trackers("train", config={k: v for k, v in _flat(to_dict(cfg)).items()})

    sampler = StepSampler(len(train_set), cfg.batch_size, cfg.seed,
                          start_batch=progress.step * cfg.grad_accum,
                          rank=accelerator.process_index, world=accelerator.num_processes)
    train_loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers)
    valid_loader = DataLoader(valid_set, batch_size=cfg.batch_size, shuffle=False)
    # validation shards across processes; training batches are already per-process
    valid_loader = accelerator.prepare_data_loader(valid_loader) if len(valid_set) else None

    n_params = accelerator.unwrap_model(model).num_parameters()
    accelerator.print(f"model: {n_params / 1e6:.2f}M parameters, {len(train_set)} train / "
                      f"{len(valid_set)} valid windows, {accelerator.num_processes} process(es), "
                      f"precision {accelerator.mixed_precision}")
    bar = tqdm(total=cfg.steps, initial=progress.step, desc="train", dynamic_ncols=True,
               disable=not accelerator.is_main_process, file=sys.stderr)
    last_good = resume
    tokens, t0 = 0, time.perf_counter()
    model.train()
    last_step = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    try:
        for batch in train_loader:
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            inputs, targets, mask = training_tensors(batch, special)
            with accelerator.accumulate(model):
                logits = model(inputs, batch["instrument"], batch["present"])
                loss, _ = accelerator.unwrap_model(model).loss(logits.float(), targets, mask)
                if not torch.isfinite(accelerator.reduce(loss.detach(), "max")):
                    where = f"; the last good checkpoint {last_good} is intact" if last_good else ""
                    raise UserError(f"loss became {loss.item()} at step {progress.step}{where}; "
                                    "lower optim.lr or check the cache")
                for group in optimizer.param_groups:
                    group["lr"] = learning_rate(progress.step, cfg)
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.optim.grad_clip > 0:
                    accelerator.clip_grad_norm_(model.parameters(), cfg.optim.grad_clip)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            tokens += int(mask.sum()) * accelerator.num_processes
            if not accelerator.sync_gradients:
                continue
            progress.step += 1
            if ema is not None:
                ema.update(accelerator.unwrap_model(model))
            bar.update(1)
            if progress.step % cfg.log_every == 0 or progress.step == last_step:
                rate = tokens / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:.0f}")
                accelerator.log({"train/loss": loss.item(), "train/tokens_per_s": rate,
                                 "train/lr": learning_rate(progress.step - 1, cfg)}, step=progress.step)
                _append_log(accelerator, out, {"step": progress.step, "loss": loss.item()})
                tokens, t0 = 0, time.perf_counter()
            if valid_loader is not None and (progress.step % cfg.eval_every == 0
                                             or progress.step == last_step):
                metrics = evaluate(model, valid_loader, accelerator, cfg,
                                   list(cache.slots) if cfg.model.mode == "stems" else ["mix"], special)
                accelerator.log(metrics, step=progress.step)
                _append_log(accelerator, out, {"step": progress.step, **metrics})
                if metrics:
                    accelerator.print(f"step {progress.step}: valid loss {metrics['valid/loss']:.4f}")
            if progress.step % cfg.save_every == 0 or progress.step == last_step:
                last_good = save_checkpoint(accelerator, model, ema, progress, cfg, cache.codec,
                                            trained)
            if progress.step >= last_step:
                break
    finally:
        bar.close()
    accelerator.end_training()
    accelerator.print(f"trained to step {progress.step}; model: {out} "
                      f"(load with MultiStreamTransformer.from_pretrained('{out}'))")
    return 0


def _append_log(accelerator: Accelerator, out: Path, record: dict) -> None:
    """A plain JSON-lines log beside TensorBoard's, easy to read in tests and scripts."""
    if accelerator.is_main_process:
        with open(out / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")


def _flat(d: dict, prefix: str = "") -> dict:
    flat = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flat(v, f"{prefix}{k}."))
        else:
            flat[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return flat


if __name__ == "__main__":
    raise SystemExit(main())
