"""Train the mini codec (EnCodec's building blocks at reduced width) on rendered stems.

    accelerate launch train/train_codec.py --config configs/codec-mini.yaml
    accelerate launch train/train_codec.py --config configs/codec-mini.yaml steps=40000  # resumes
    accelerate launch train/train_codec.py out=runs/codec-mini   # resumes with its stored config

Reading order: evaluation -> export -> init -> main (setup, resume, the loop). The model, its
codebook upkeep and its losses live in stemcodec.codec (mini.py, codebooks.py, losses.py); the
config, the segments, the run folder and the progress plumbing in stemcodec.training.
The device and number of processes come from `accelerate config`; everything runs in float32.
Run folder (stemcodec/training/run.py):
    OUT/model.safetensors + config.json   the latest codec: load_codec("OUT") reads it, and
                                          a copy in stemcodec/assets/codec-mini is `--codec mini`
    OUT/checkpoints/step_XXXXXXX/         full training state for resume (last few kept)
    OUT/log.jsonl, OUT/logs/              losses and validation (JSON lines, TensorBoard)
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.utils import broadcast, set_seed
from torch import nn
from torch.utils.data import DataLoader

from stemcodec.checkpoint import load_pretrained
from stemcodec.codec import CONFIG_KEYS, DECODER_DEFAULTS, build_codec, save_codec
from stemcodec.codec.codebooks import (
    codebook_perplexity,
    init_codebooks,
    replace_dead_codes,
    sync_codebooks,
)
from stemcodec.codec.istft import ISTFTDecoder
from stemcodec.codec.losses import (
    Balancer,
    FrameSpectrum,
    LogFrequencySTFT,
    MultiResolutionSTFT,
    MultiScaleMel,
    PhaseAdvance,
    feature_matching,
    hinge_discriminator,
    hinge_generator,
)
from stemcodec.codec.mini import CodecModule, preserving_init
from stemcodec.errors import UserError, cli
from stemcodec.metrics.pitch import tone_test
from stemcodec.metrics.quality import mel_distance, mrstft_distance, si_sdr
from stemcodec.training import run
from stemcodec.training.codec_data import (
    SegmentDataset,
    scan_corpora,
    split_stems,
    validation_segments,
)
from stemcodec.training.config import CodecTrainConfig, check_codec_config, parse_args
from stemcodec.training.progress import Progress, check_finite, due, progress_bar
from stemcodec.training.samplers import StepBatches
from stemcodec.training.schedule import learning_rate
from stemcodec.training.signals import StopSignals, quiet_worker

logger = logging.getLogger("train_codec")


# -- evaluation -----------------------------------------------------------------------------
@torch.no_grad()
def evaluate(module: CodecModule, segments: torch.Tensor, mel: MultiScaleMel, batch_size: int,
             rate: int) -> dict[str, float]:
    """Reconstruction of held-out segments with all codebooks: the training mel loss and the
    eval metrics (mel distance, multi-resolution STFT distance, SI-SDR), averaged; and the
    share of the 20 test tones that come back at their pitch (what mel distance misses)."""
    module.eval()
    device = next(module.parameters()).device
    sums = {"valid/mel_loss": 0.0, "valid/mel_distance": 0.0, "valid/mrstft": 0.0,
            "valid/si_sdr": 0.0}
    for first in range(0, segments.shape[0], batch_size):
        x = segments[first: first + batch_size].to(device)
        y = module(x)[0]
        sums["valid/mel_loss"] += float(mel(y, x)) * x.shape[0]
        for ref, est in zip(x.cpu(), y.cpu()):
            sums["valid/mel_distance"] += mel_distance(ref, est, rate)
            sums["valid/mrstft"] += mrstft_distance(ref, est)
            sums["valid/si_sdr"] += si_sdr(ref, est)
    out = {k: v / segments.shape[0] for k, v in sums.items()}
    tones = tone_test(lambda w: module(w[None].to(device))[0][0].cpu(), rate)
    out["valid/tones_at_pitch"] = tones["at_pitch"]
    module.train()
    return out


# -- export ---------------------------------------------------------------------------------
def export(module: CodecModule, cfg: CodecTrainConfig, step: int, directory: Path) -> None:
    """The codec as load_codec reads it, plus where it came from."""
    training = {"step": step, "corpora": list(cfg.data.corpora),
                "segment_seconds": cfg.data.segment_seconds, "adversarial": cfg.losses.adversarial,
                "init_from": cfg.init_from, "freeze": list(cfg.freeze)}
    save_codec(module.codec, {**cfg.model, "training": training}, directory)


# -- init -----------------------------------------------------------------------------------
def open_gate(codec: nn.Module, g: float) -> None:
    """Start the decoder's noise gate at opening `g` in every bin (its bias at logit g)."""
    gate = getattr(codec.decoder, "gate", None)
    if gate is None:
        raise UserError("init_gate needs model.decoder=istft with model.decoder_noise=true")
    if not 0.0 < g < 1.0:
        raise UserError(f"init_gate={g:g}: the gate's opening lies strictly between 0 and 1")
    with torch.no_grad():
        gate.weight.zero_()
        gate.bias.fill_(math.log(g / (1.0 - g)))


def load_init(codec: nn.Module, cfg: CodecTrainConfig) -> None:
    """Start from the weights of the codec folder cfg.init_from, of the same architecture."""
    folder = Path(cfg.init_from)
    if not (folder / "config.json").is_file():
        raise UserError(f"init_from={folder}: not a codec folder (config.json + "
                        "model.safetensors), e.g. stemcodec/assets/codec-mini or runs/codec-mini")
    state, saved = load_pretrained(folder)
    saved = {**DECODER_DEFAULTS, **saved}  # codecs saved before the iSTFT decoder: SEANet
    # a decoder_noise gate starts closed and an accumulated phase's frequency head at the bins'
    # centres: a decoder without them may start a decoder with them (their heads start fresh)
    encoder_keys = ("encoder", "encoder_dim", "encoder_layers")
    keys = (*CONFIG_KEYS, *encoder_keys) if "decoder" not in cfg.init_parts else \
        (*CONFIG_KEYS, *(k for k in DECODER_DEFAULTS if k not in ("decoder_noise", "decoder_phase")))
    for key in keys:
        if saved.get(key) != cfg.model.get(key):
            raise UserError(f"init_from={folder} has model.{key}={saved.get(key)!r}, this "
                            f"config {cfg.model.get(key)!r}; make them agree")
    state = {k: v for k, v in state.items() if k.split(".")[0] in cfg.init_parts}
    codec.load_state_dict(state, strict=False)


def discriminator(cfg: CodecTrainConfig) -> nn.Module:
    """EnCodec's multi-scale STFT discriminator."""
    from encodec.msstftd import MultiScaleSTFTDiscriminator
    disc = MultiScaleSTFTDiscriminator(filters=cfg.losses.disc_filters)
    for sub in disc.discriminators:  # hann_window(n) is a view of n + 1 values, which
        sub.spec_transform.window = sub.spec_transform.window.clone()  # safetensors refuses
    return disc


# -- main -----------------------------------------------------------------------------------
@cli
def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(CodecTrainConfig, argv, "train/train_codec.py",
                     "Train the mini codec on rendered stems.",
                     "optim.lr=1e-4 data.corpora=[data/a,data/b] out=runs/codec-mini")
    check_codec_config(cfg)
    out = Path(cfg.out)
    # a run folder resumes only with the architecture (and discriminator) it was started with
    run.check_resume(
        out, cfg, ["model", "freeze", "losses.adversarial"], unordered=["freeze"],
        defaults={f"model.{k}": v for k, v in DECODER_DEFAULTS.items()},
        # the discriminator's size and the balanced losses are in an adversarial checkpoint
        derived={"the adversarial set-up (disc_filters, balanced losses)": lambda c: (
            c.get("losses.disc_filters"), *(k for k in ("l1", "mel", "stft", "adv", "feat")
                                            if (c.get(f"losses.{k}") or 0) > 0))
            if c.get("losses.adversarial") else None})
    logging.getLogger("accelerate").setLevel(logging.WARNING)  # its per-file save lines
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    rate = int(cfg.model["sample_rate"])
    hop = math.prod(cfg.model["ratios"])
    length = max(1, round(cfg.data.segment_seconds * rate / hop)) * hop  # whole frames
    stems = split_stems(scan_corpora(cfg.data.corpora, cfg.data.include_mix, length, rate),
                        cfg.data.valid_fraction)

    accelerator = Accelerator(log_with="tensorboard", project_dir=str(out / "logs"))
    set_seed(cfg.seed)
    codec = build_codec(cfg.model)
    resume = run.latest_checkpoint(out)
    if cfg.init == "preserving":
        preserving_init(codec)
    if cfg.init_from and resume is None:  # a resumed run has its own weights
        load_init(codec, cfg)
    if cfg.init_gate is not None:  # after init_from: a decoder trained further can reopen it
        open_gate(codec, cfg.init_gate)
    module = CodecModule(codec, cfg.freeze)
    trainable = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=cfg.optim.lr, betas=cfg.optim.betas,
                                  weight_decay=cfg.optim.weight_decay)
    mel = MultiScaleMel(rate, cfg.losses.mel_scales, cfg.losses.n_mels).to(accelerator.device)
    stft = MultiResolutionSTFT(cfg.losses.stft_windows)
    log_frequency = LogFrequencySTFT(rate, cfg.losses.log_frequency_windows).to(accelerator.device)
    w = cfg.losses
    phase_loss = None
    if w.phase > 0:
        if not isinstance(codec.decoder, ISTFTDecoder):
            raise UserError("losses.phase needs an iSTFT decoder (model.decoder=istft)")
        phase_loss = PhaseAdvance(codec.decoder.n_fft, codec.decoder.hop).to(accelerator.device)
        codec.decoder.detach_running = bool(w.phase_trains_frequency)
    frame_loss = None
    if w.frame_magnitude > 0 or w.group_delay > 0:
        if not isinstance(codec.decoder, ISTFTDecoder):
            raise UserError("losses.frame_magnitude and losses.group_delay need an iSTFT "
                            "decoder (model.decoder=istft)")
        frame_loss = FrameSpectrum(codec.decoder.n_fft, codec.decoder.hop).to(accelerator.device)
    disc = d_optimizer = balancer = None
    # prepared and checkpointed in this order: codec, optimizer (, discriminator, its
    # optimizer), then the registered objects: (the balancer,) the step
    if cfg.losses.adversarial:
        disc = discriminator(cfg)
        d_optimizer = torch.optim.AdamW(disc.parameters(), lr=cfg.losses.disc_lr,
                                        betas=cfg.optim.betas, weight_decay=0.0)
        module, optimizer, disc, d_optimizer = accelerator.prepare(module, optimizer, disc,
                                                                   d_optimizer)
        weights = {"l1": w.l1, "mel": w.mel, "stft": w.stft, "log_frequency": w.log_frequency,
                   "adv": w.adv, "feat": w.feat}
        balancer = Balancer({k: v for k, v in weights.items() if v > 0},
                            total_norm=cfg.losses.balancer_norm)
        accelerator.register_for_checkpointing(balancer)
    else:
        module, optimizer = accelerator.prepare(module, optimizer)
    codec = accelerator.unwrap_model(module).codec
    progress = Progress()
    accelerator.register_for_checkpointing(progress)

    run.restore(accelerator, resume, progress)
    # a rerun of a finished run (or of one stopped by stop_after) trains no further step
    if progress.step >= (cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)):
        accelerator.print(f"{out} already trained for {progress.step} steps (steps={cfg.steps}"
                          + (f", stop_after={cfg.stop_after}" if cfg.stop_after else "") + ")")
        return 0
    run.begin(accelerator, out, cfg, "train_codec", progress.step)

    train_set = SegmentDataset(stems["train"], length, rate, cfg.seed, cfg.data.silence_db,
                               tone_fraction=cfg.data.tone_fraction)
    sampler = StepBatches(cfg.batch_size, progress.step, accelerator.process_index,
                          accelerator.num_processes)
    # its own generator: a loader must not draw from the global RNG (resume would diverge)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.num_workers,
                        generator=torch.Generator(), worker_init_fn=quiet_worker)
    valid = validation_segments(stems["valid"], cfg.eval_segments, length, rate, cfg.seed,
                                cfg.data.silence_db)
    n_params = sum(p.numel() for p in codec.parameters())
    accelerator.print(
        f"codec: {n_params / 1e6:.2f}M parameters"
        + (f" ({sum(p.numel() for p in trainable) / 1e6:.2f}M trained, {'+'.join(cfg.freeze)} "
           "frozen)" if cfg.freeze else "") + f"; {len(stems['train'])} train / "
        f"{len(stems['valid'])} valid stems; segments {length / rate:.2f} s x {cfg.batch_size}; "
        f"{accelerator.num_processes} process(es) on {accelerator.device}")

    def save(directory: Path) -> None:
        export(accelerator.unwrap_model(module), cfg, progress.step, directory)

    bar = progress_bar(accelerator, cfg.steps, progress.step, "train codec")
    last_good = resume
    last_step = cfg.steps if cfg.stop_after is None else min(cfg.steps, cfg.stop_after)
    replaced, t0, steps_timed = 0, time.perf_counter(), 0
    module.train()
    stop, stopping = StopSignals(accelerator), False
    try:
        for x in loader:
            x = x.to(accelerator.device)  # [B, 1, S]
            # k-means start, unless the codebooks came from init_from
            if progress.step == 0 and resume is None and not (
                    cfg.init_from and "quantizer" in cfg.init_parts):
                init_codebooks(codec, x, cfg.quantizer.kmeans_iters, broadcast)
            lr_scale = learning_rate(progress.step, 1.0, cfg.optim.warmup_steps,
                                     cfg.optim.min_lr_ratio, cfg.steps)
            for group in optimizer.param_groups:
                group["lr"] = cfg.optim.lr * lr_scale
            y, penalty, emb = module(x)
            parts = {"l1": F.l1_loss(y, x), "mel": mel(y, x), "commit": penalty}
            if w.stft > 0:
                parts["stft"] = stft(y, x)
            if w.log_frequency > 0:
                parts["log_frequency"] = log_frequency(y, x)
            if phase_loss is not None:
                parts["phase"] = phase_loss(codec.decoder.last_phase, x)
            if frame_loss is not None:
                frame = frame_loss(codec.decoder.last_spectrum, x)
                parts["frame_magnitude"], parts["group_delay"] = (frame["magnitude"],
                                                                   frame["group_delay"])

            if disc is not None:  # the discriminator's step, on real and (detached) fake
                for group in d_optimizer.param_groups:
                    group["lr"] = w.disc_lr * lr_scale
                logits, _ = disc(torch.cat([x, y.detach()]))
                real, fake = zip(*(logit.chunk(2) for logit in logits))
                d_loss = hinge_discriminator(list(real), list(fake))
                accelerator.backward(d_loss)
                if cfg.optim.grad_clip > 0:
                    accelerator.clip_grad_norm_(disc.parameters(), cfg.optim.grad_clip)
                d_optimizer.step()
                d_optimizer.zero_grad(set_to_none=True)
                parts["disc"] = d_loss.detach()
                plain = accelerator.unwrap_model(disc)  # grads flow to y only, not into D
                with torch.no_grad():
                    _, real_maps = plain(x)
                fake_logits, fake_maps = plain(y)
                parts["adv"] = hinge_generator(fake_logits)
                parts["feat"] = feature_matching(real_maps, fake_maps)

            # the decoder's own terms (phase, frames) are not balanced: they act on its frames
            direct = w.phase * parts.get("phase", 0.0) \
                + w.frame_magnitude * parts.get("frame_magnitude", 0.0) \
                + w.group_delay * parts.get("group_delay", 0.0)
            loss = w.l1 * parts["l1"] + w.mel * parts["mel"] + w.commitment * parts["commit"] \
                + w.stft * parts.get("stft", 0.0) \
                + w.log_frequency * parts.get("log_frequency", 0.0) + direct
            check_finite(accelerator, loss, progress.step, last_good, "lower optim.lr")
            if balancer is not None:
                grad = balancer.gradient({k: parts[k] for k in balancer.weights}, y,
                                         lambda t: accelerator.reduce(t, "mean"))
                accelerator.backward((y * grad.detach()).sum() + w.commitment * parts["commit"]
                                     + direct)
            else:
                accelerator.backward(loss)
            if cfg.optim.grad_clip > 0:
                accelerator.clip_grad_norm_(trainable, cfg.optim.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if "quantizer" not in cfg.freeze:
                if accelerator.num_processes > 1:  # every rank's batch shapes the codebooks
                    sync_codebooks(codec, lambda t: accelerator.reduce(t, "mean"))
                    emb = accelerator.gather(emb)
                replaced += replace_dead_codes(codec, emb, cfg.quantizer.dead_code, torch.Generator(
                    ).manual_seed(cfg.seed * 1_000_003 + progress.step))
            progress.step += 1
            steps_timed += 1
            bar.update(1)

            if due(progress.step, cfg.log_every, last_step):
                rate_s = steps_timed / max(time.perf_counter() - t0, 1e-9)
                shown = {k: float(v.detach()) for k, v in parts.items()}
                record = {"step": progress.step, "loss": loss.item(), **shown,
                          "lr": cfg.optim.lr * lr_scale, "steps_per_s": rate_s,
                          "dead_codes_replaced": replaced,
                          **{f"perplexity_q{i}": p
                             for i, p in enumerate(codebook_perplexity(codec))}}
                bar.set_postfix(loss=f"{loss.item():.3f}", mel=f"{shown['mel']:.3f}")
                accelerator.log({f"train/{k}": v for k, v in record.items() if k != "step"},
                                step=progress.step)
                run.append_log(accelerator, out, record)
                replaced, t0, steps_timed = 0, time.perf_counter(), 0
            if due(progress.step, cfg.eval_every, last_step):
                if accelerator.is_main_process and valid.shape[0]:
                    metrics = evaluate(accelerator.unwrap_model(module), valid, mel,
                                       cfg.batch_size, rate)
                    accelerator.log(metrics, step=progress.step)
                    run.append_log(accelerator, out, {"step": progress.step, **metrics})
                    bar.write(f"step {progress.step}: " + ", ".join(
                        f"{k[6:]} {v:.3f}" for k, v in metrics.items()))
                accelerator.wait_for_everyone()
            stopping = stop.requested()  # SIGINT / SIGTERM: a checkpoint here, then stop
            if stopping or due(progress.step, cfg.save_every, last_step):
                last_good = run.save_checkpoint(accelerator, out, progress.step, cfg.keep_last,
                                                save)
            if stopping or progress.step >= last_step:
                break
    finally:
        stop.restore()
        bar.close()
    accelerator.end_training()
    if stopping and progress.step < last_step:  # (a signal during the last step: finished)
        return stop.report(progress.step, last_good, out)
    accelerator.print(f"trained to step {progress.step}; codec: {out} "
                      f"(load with load_codec('{out}'))")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
