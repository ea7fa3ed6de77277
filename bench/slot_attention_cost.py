"""What a lighter slot attention saves per generation step (issue 14).

    python bench/slot_attention_cost.py [--config configs/mini.yaml] [--slots 4] [--frames 150]
                                        [--repeats 5] [--threads 1] [--json F]

The config's model with random weights, as the full slot attention (every layer, full width),
against: slot attention in every other layer (`model.slot_attention_every=2`), at half width
(`model.slot_attention_dim=dim/2`), both, and none (`model.slot_attention=false`, the
ablation: the floor). Each variant samples `--frames` frames of `--slots` slots with the KV
cache (`generate_codes`, what generation runs, no decoding); runs are interleaved variant by
variant and the median of `--repeats` is printed as seconds and as a ratio to the full one,
beside the parameter count. What it does not say: whether the lighter one keeps the
permanence and coherence figures; that takes a trained model (eval/report.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stemcodec.model import ModelConfig, MultiStreamTransformer, SamplingConfig, generate_codes  # noqa: E402


def variants(dim: int) -> dict[str, dict]:
    return {"full": {}, "every 2nd layer": {"slot_attention_every": 2},
            "half width": {"slot_attention_dim": dim // 2},
            "every 2nd, half width": {"slot_attention_every": 2, "slot_attention_dim": dim // 2},
            "none": {"slot_attention": False}}


def build(base: dict, overrides: dict) -> MultiStreamTransformer:
    torch.manual_seed(0)
    return MultiStreamTransformer(ModelConfig(**{**base, **overrides})).eval()


def time_once(model: MultiStreamTransformer, slots: int, frames: int) -> float:
    instrument = torch.arange(slots)[None]
    start = time.perf_counter()
    generate_codes(model, instrument, frames, SamplingConfig(),
                   generator=torch.Generator().manual_seed(0))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "mini.yaml"))
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--frames", type=int, default=150)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    base = yaml.safe_load(Path(args.config).read_text())["model"]
    base = {k: v for k, v in base.items() if k in ModelConfig.__dataclass_fields__}
    base["max_slots"] = max(base.get("max_slots", 6), args.slots)
    models = {name: build(base, o) for name, o in variants(base.get("dim", 256)).items()}
    times: dict[str, list[float]] = {name: [] for name in models}
    for model in models.values():  # warm-up
        time_once(model, args.slots, 8)
    for _ in range(args.repeats):
        for name, model in models.items():
            times[name].append(time_once(model, args.slots, args.frames))
    full = statistics.median(times["full"])
    result = {"slots": args.slots, "frames": args.frames, "threads": args.threads,
              "variants": {}}
    print(f"{args.slots} slots, {args.frames} frames, {args.threads} thread(s), "
          f"medians of {args.repeats}")
    for name, model in models.items():
        s = statistics.median(times[name])
        result["variants"][name] = {"seconds": round(s, 4), "ratio_to_full": round(s / full, 3),
                                    "parameters": model.num_parameters()}
        print(f"  {name:24s} {s:7.3f} s  {s / full:5.2f}x of full  "
              f"{model.num_parameters() / 1e6:5.2f}M parameters")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
