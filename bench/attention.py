"""Factorised (time + slot) attention against full joint attention over all K*T positions.

    python bench/attention.py [--slots 4] [--frames 750] [--dim 256] [--heads 4] [--device cpu]

Both variants do the same job for one layer's attention: every position sees its own slot's
past and the other slots' present frame (joint attention uses a K*T x K*T mask for that).
Time is the median of a few forward+backward passes; peak memory is measured in a fresh
subprocess per variant (max RSS on CPU, max_memory_allocated on CUDA). Printed as ratios.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from einops import rearrange


def factorised(q, k, v, K: int):
    """q,k,v: [B, K, H, T, D] -> time attention per slot, then slot attention per frame."""
    B, _, H, T, D = q.shape
    t = F.scaled_dot_product_attention(
        rearrange(q, "b k h t d -> (b k) h t d"), rearrange(k, "b k h t d -> (b k) h t d"),
        rearrange(v, "b k h t d -> (b k) h t d"), is_causal=True)
    t = rearrange(t, "(b k) h t d -> (b t) h k d", b=B)
    s = F.scaled_dot_product_attention(t, rearrange(k, "b k h t d -> (b t) h k d"),
                                       rearrange(v, "b k h t d -> (b t) h k d"))
    return rearrange(s, "(b t) h k d -> b k h t d", b=B)


def joint_mask(K: int, T: int, device) -> torch.Tensor:
    """[K*T, K*T] bool: same slot and past-or-present frame, or another slot at the same frame."""
    slot = torch.arange(K, device=device).repeat_interleave(T)
    frame = torch.arange(T, device=device).repeat(K)
    same_slot = slot[:, None] == slot[None, :]
    return (same_slot & (frame[None, :] <= frame[:, None])) | (frame[:, None] == frame[None, :])


def joint(q, k, v, K: int):
    B, _, H, T, D = q.shape
    mask = joint_mask(K, T, q.device)
    flat = [rearrange(x, "b k h t d -> b h (k t) d") for x in (q, k, v)]
    out = F.scaled_dot_product_attention(*flat, attn_mask=mask)
    return rearrange(out, "b h (k t) d -> b k h t d", k=K)


def run_once(variant: str, args) -> float:
    device = torch.device(args.device)
    torch.manual_seed(0)
    shape = (args.batch, args.slots, args.heads, args.frames, args.dim // args.heads)
    q, k, v = (torch.randn(shape, device=device, requires_grad=True) for _ in range(3))
    fn = factorised if variant == "factorised" else joint
    times = []
    for i in range(args.repeats + 1):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn(q, k, v, args.slots).sum().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:  # the first pass warms up
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_in_subprocess(variant: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv, "--child", variant],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(variant: str, args) -> None:
    import resource
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    seconds = run_once(variant, args)
    if args.device.startswith("cuda"):
        peak = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--slots", type=int, default=4)
    p.add_argument("--frames", type=int, default=750)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None, help="write the figures to this file")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    if args.child:
        child(args.child, args)
        return 0
    parent_argv = [f"--{k}={getattr(args, k)}" for k in
                   ("slots", "frames", "batch", "dim", "heads", "repeats", "device")]
    fact = measure_in_subprocess("factorised", parent_argv)
    full = measure_in_subprocess("joint", parent_argv)
    result = {
        "device": args.device, "slots": args.slots, "frames": args.frames,
        "factorised": fact, "joint": full,
        "time_ratio_joint_over_factorised": full["seconds"] / fact["seconds"],
        "memory_ratio_joint_over_factorised": full["peak_mb"] / max(fact["peak_mb"], 1e-6),
    }
    print(f"K={args.slots} T={args.frames} dim={args.dim} on {args.device}: "
          f"factorised {fact['seconds'] * 1000:.1f} ms, {fact['peak_mb']:.0f} MB; "
          f"joint {full['seconds'] * 1000:.1f} ms, {full['peak_mb']:.0f} MB; "
          f"joint/factorised: time x{result['time_ratio_joint_over_factorised']:.1f}, "
          f"memory x{result['memory_ratio_joint_over_factorised']:.1f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
