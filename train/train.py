"""Train the multi-stream transformer on a token cache, with accelerate.

    accelerate launch train/train.py --config configs/mini.yaml data.cache=CACHE out=runs/mini
    accelerate launch train/train.py out=runs/mini   # resumes, with the run's stored config

Reading order: batches -> evaluation -> export -> main (setup, resume, the loop). The config,
the run folder, the schedule and the progress plumbing live in stemcodec.training.
The device, precision (bf16 on GPU) and number of processes come from `accelerate config`.
Ctrl-C or SIGTERM: the step in progress finishes, a checkpoint is saved, one line says where
(stemcodec/training/signals.py).
Run folder (stemcodec/training/run.py):
    OUT/model.safetensors + config.json   the latest model (from_pretrained(OUT) loads it)
    OUT/checkpoints/step_XXXXXXX/         full training state for resume (last few kept)
    OUT/log.jsonl, OUT/logs/              losses and validation (JSON lines, TensorBoard)
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader

from stemcodec.checkpoint import save_pretrained
from stemcodec.config import to_dict
from stemcodec.corpus.cache import TokenCache
from stemcodec.corpus.dataset import DataConfig, WindowDataset
from stemcodec.errors import UserError, cli
from stemcodec.model import MultiStreamTransformer, Objects, build_delay
from stemcodec.objects import NUM_OBJECTS
from stemcodec.training import run
from stemcodec.training.config import TrainConfig, check_train_config, parse_args
from stemcodec.training.ema import EMA
from stemcodec.training.progress import Progress, check_finite, due, progress_bar
from stemcodec.training.samplers import ShuffledBatches
from stemcodec.training.schedule import learning_rate
from stemcodec.training.signals import StopSignals, quiet_worker

logger = logging.getLogger("train")

# model keys added since older runs were started, with the value those runs had
MODEL_KEYS_ADDED = {"model.objects": False, "model.num_objects": NUM_OBJECTS,
                    "model.timbre_layers": 2}


# -- batches --------------------------------------------------------------------------------
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


def object_inputs(batch: dict[str, torch.Tensor], cfg: TrainConfig) -> dict[str, Objects]:
    """The model's `objects` argument: each slot's object id and reference clip (dropped at
    random by the dataset), for a model with model.objects; nothing for one without."""
    if not cfg.model.objects:
        return {}
    return {"objects": Objects(batch["object"], batch["reference"], batch["reference_mask"])}


# -- evaluation -----------------------------------------------------------------------------
@torch.no_grad()
def evaluate(model: nn.Module, loader, accelerator: Accelerator, cfg: TrainConfig,
             slots: list[str], special: int) -> dict[str, float]:
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
        with accelerator.autocast():  # the EMA copy is not prepared: the same precision
            logits = model(inputs, batch["instrument"], batch["present"],
                           **object_inputs(batch, cfg))
        ce = MultiStreamTransformer.token_nll(logits.float(), targets)
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


# -- export ---------------------------------------------------------------------------------
def export_model(model: MultiStreamTransformer, directory: Path, codec: dict, data: DataConfig,
                 instruments: list[str], objects: dict[str, list[str]] | None = None) -> None:
    """The model as safetensors + config.json, loadable without this script. The "training"
    section tells generation the window the model learned (its sliding window), whether
    slots were dropped (what classifier-free guidance needs) and the instruments its data
    had (a vocabulary entry it never heard is refused, not generated as noise); a model with
    objects also the objects each slot's data was labelled with (what generation draws from
    and accepts) and the length of its reference clips."""
    training = {"window": data.window, "slot_dropout": data.p_all_slots < 1.0,
                "instruments": list(instruments)}
    if model.config.objects:
        training.update(objects=objects or {}, reference_frames=data.reference_frames)
    save_pretrained(directory, model.state_dict(), {**to_dict(model.config), "codec": codec,
                                                    "training": training})


# -- main -----------------------------------------------------------------------------------
@cli
def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(TrainConfig, argv, "train/train.py",
                     "Train the multi-stream transformer (accelerate).",
                     "optim.lr=1e-4 data.cache=cache")
    check_train_config(cfg)
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
    # the weights in the checkpoint fit this model only; an EMA is saved with it or not
    run.check_resume(out, cfg, ["model"], defaults=MODEL_KEYS_ADDED,
                     derived={"an EMA (ema_decay > 0)": lambda c: (c.get("ema_decay") or 0) > 0})

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
    trained_objects = train_set.object_names()
    if len(train_set) == 0:
        raise UserError("no training windows: the cache is empty or its songs are shorter "
                        "than data.window frames")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.optim.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}], lr=cfg.optim.lr, betas=cfg.optim.betas)
    model, optimizer = accelerator.prepare(model, optimizer)
    # checkpointed in this order: the step, then the EMA (custom_checkpoint_0, _1)
    ema = EMA(accelerator.unwrap_model(model), cfg.ema_decay) if cfg.ema_decay > 0 else None
    progress = Progress()
    accelerator.register_for_checkpointing(progress)
    if ema is not None:
        accelerator.register_for_checkpointing(ema)

    resume = run.latest_checkpoint(out)
    run.restore(accelerator, resume, progress)
    # a rerun of a finished run (or of one stopped by stop_after) trains no further step
    if progress.step >= (cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)):
        accelerator.print(f"{out} already trained for {progress.step} steps (steps={cfg.steps}"
                          + (f", stop_after={cfg.stop_after}" if cfg.stop_after else "") + ")")
        return 0
    run.begin(accelerator, out, cfg, "train", progress.step)

    sampler = ShuffledBatches(len(train_set), cfg.batch_size, cfg.seed,
                              start_batch=progress.step * cfg.grad_accum,
                              rank=accelerator.process_index, world=accelerator.num_processes)
    train_loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                              worker_init_fn=quiet_worker)
    valid_loader = DataLoader(valid_set, batch_size=cfg.batch_size, shuffle=False)
    # validation shards across processes; training batches are already per-process
    valid_loader = accelerator.prepare_data_loader(valid_loader) if len(valid_set) else None

    def lr_at(step: int) -> float:
        o = cfg.optim
        return learning_rate(step, o.lr, o.warmup_steps, o.min_lr_ratio, cfg.steps)

    def export(directory: Path) -> None:  # the EMA weights, when there are any
        final = ema.module if ema is not None else accelerator.unwrap_model(model)
        export_model(final, directory, cache.codec, cfg.data, trained, trained_objects)

    n_params = accelerator.unwrap_model(model).num_parameters()
    accelerator.print(f"model: {n_params / 1e6:.2f}M parameters, {len(train_set)} train / "
                      f"{len(valid_set)} valid windows, {accelerator.num_processes} process(es), "
                      f"precision {accelerator.mixed_precision}")
    bar = progress_bar(accelerator, cfg.steps, progress.step, "train")
    last_good = resume
    tokens, t0 = 0, time.perf_counter()
    model.train()
    last_step = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    stop, stopping = StopSignals(accelerator), False
    try:
        for batch in train_loader:
            batch = {k: v.to(accelerator.device) for k, v in batch.items()}
            inputs, targets, mask = training_tensors(batch, special)
            with accelerator.accumulate(model):
                logits = model(inputs, batch["instrument"], batch["present"],
                               **object_inputs(batch, cfg))
                loss, _ = accelerator.unwrap_model(model).loss(logits.float(), targets, mask)
                check_finite(accelerator, loss, progress.step, last_good,
                             "lower optim.lr or check the cache")
                for group in optimizer.param_groups:
                    group["lr"] = lr_at(progress.step)
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
                ema.update_parameters(accelerator.unwrap_model(model))
            bar.update(1)
            if due(progress.step, cfg.log_every, last_step):
                rate = tokens / max(time.perf_counter() - t0, 1e-9)
                bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:.0f}")
                accelerator.log({"train/loss": loss.item(), "train/tokens_per_s": rate,
                                 "train/lr": lr_at(progress.step - 1)}, step=progress.step)
                run.append_log(accelerator, out, {"step": progress.step, "loss": loss.item()})
                tokens, t0 = 0, time.perf_counter()
            if valid_loader is not None and due(progress.step, cfg.eval_every, last_step):
                # the weights that are exported are the weights that are scored
                metrics = evaluate(ema.module if ema is not None else model, valid_loader,
                                   accelerator, cfg,
                                   list(cache.slots) if cfg.model.mode == "stems" else ["mix"],
                                   special)
                accelerator.log(metrics, step=progress.step)
                run.append_log(accelerator, out, {"step": progress.step, **metrics})
                if metrics:
                    accelerator.print(f"step {progress.step}: valid loss {metrics['valid/loss']:.4f}")
            stopping = stop.requested()  # SIGINT / SIGTERM: a checkpoint here, then stop
            if stopping or due(progress.step, cfg.save_every, last_step):
                last_good = run.save_checkpoint(accelerator, out, progress.step, cfg.keep_last,
                                                export, export_inside=True)
            if stopping or progress.step >= last_step:
                break
    finally:
        stop.restore()
        bar.close()
    accelerator.end_training()
    if stopping and progress.step < last_step:  # (a signal during the last step: finished)
        return stop.report(progress.step, last_good, out)
    accelerator.print(f"trained to step {progress.step}; model: {out} "
                      f"(load with MultiStreamTransformer.from_pretrained('{out}'))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
