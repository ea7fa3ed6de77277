"""Training throughput (tokens/s) of model configs, on random tokens.

    python bench/train_speed.py [--configs mini base] [--slots 5] [--frames 300] [--batch 4]

A token is one (slot, codebook, frame) position with a loss. Each config runs a few warm-up
steps, then times forward + backward + AdamW steps. Sizes can be lowered for CPU runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from stemcodec.config import from_dict
from stemcodec.model import ModelConfig, MultiStreamTransformer, build_delay

ROOT = Path(__file__).resolve().parents[1]


def model_config(name: str) -> ModelConfig:
    import yaml
    data = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    return from_dict(ModelConfig, data.get("model", {}))


def measure(name: str, slots: int, frames: int, batch: int, steps: int, device: str) -> dict:
    torch.manual_seed(0)
    cfg = model_config(name)
    slots = min(slots, len(cfg.instruments))
    model = MultiStreamTransformer(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    codes = torch.randint(0, cfg.cardinality, (batch, slots, cfg.num_codebooks, frames),
                          device=device)
    seq = build_delay(codes, cfg.cardinality)
    inst = torch.arange(slots, device=device)[None].expand(batch, -1)
    mask = seq[..., 1:] != cfg.cardinality
    autocast = torch.autocast("cuda", torch.bfloat16) if device == "cuda" else \
        torch.autocast("cpu", enabled=False)
    times = []
    for i in range(steps + 2):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        with autocast:
            loss, _ = model.loss(model(seq[..., :-1], inst), seq[..., 1:], mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    seconds = sum(times) / len(times)
    return {"config": name, "parameters_m": model.num_parameters() / 1e6, "slots": slots,
            "frames": frames, "batch": batch, "step_s": seconds,
            "tokens_per_s": int(mask.sum()) / seconds}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["mini", "base"])
    p.add_argument("--slots", type=int, default=5)
    p.add_argument("--frames", type=int, default=300)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    results = []
    for name in args.configs:
        r = measure(name, args.slots, args.frames, args.batch, args.steps, args.device)
        results.append(r)
        print(f"{name}: {r['parameters_m']:.1f}M parameters, K={r['slots']} T={r['frames']} "
              f"B={r['batch']} on {args.device}: {r['step_s']:.2f} s/step, "
              f"{r['tokens_per_s']:.0f} tokens/s")
    if len(results) >= 2:
        print(f"{results[0]['config']}/{results[1]['config']} throughput ratio: "
              f"{results[0]['tokens_per_s'] / results[1]['tokens_per_s']:.1f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": args.device, "results": results},
                                              indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
