"""Generation speed: real-time factor per slot count (streamed too), KV-cache speedup, GPU floor.

    python bench/generate_speed.py [--config configs/mini.yaml] [--slots 1 2 4 6] [--duration 10]
                                   [--threads N] [--repeats 3] [--kv-full] [--json F]

The model is the config's `model:` section with random weights; the codec is the mini layout
(stemcodec.codec.MINI_CONFIG: 4 codebooks of 1024, 75 frames/s) with random weights, or
`--codec debug`, or `--codec bundled`: the bundled codec-mini, the one the bundled generators
decode with (its own decoder layout). Random weights cost what trained ones cost.

- rtf: seconds of audio per second of wall time for `--duration` s of all slots, generated with
  the default settings by `StemGenerator.generate` (what `stemcodec.generate` runs: KV cache,
  sliding past the model's window) and decoded by the codec; the median of `--repeats` runs. 4 slots at rtf 2 means 10 s of 4 stems in 5 s. The process's
  CPU time (generation + decoding) is printed with it: with one thread, CPU / wall below 1
  means the core was shared with other work and the wall times are slower than on an idle
  machine; CPU times are the steadier figure to compare two versions by.
- kv_speedup: the time to generate `--duration` s of `--kv-slots` slots by recomputing the
  whole prefix each step (`generate_codes(use_cache=False)`), over the time with the cache.
  Recomputing is quadratic and slow, so by default it is not run in full: a few steps are timed
  at each of several prefix lengths spread over the sequence (the last one ending at
  `--duration`), exactly as `use_cache=False` runs them (a forward over the prefix, then
  sampling), and the whole run's time is their linear interpolation summed over all steps. The
  ratio of one step at the end of the sequence is printed too. `--kv-full` runs
  `generate_codes(use_cache=False)` end to end instead.
- on CUDA (skipped otherwise): seconds per cached step against the memory-bandwidth floor,
  the bytes one step must read (weights, the gathered embedding rows, the KV cache at the
  mean position) over the device's bandwidth (a table by device name, else a measured copy).

- time_to_first_audio, rtf_stream: the same generation streamed (`StemGenerator.stream`, what
  `generate --stream` runs): seconds from the call to the first audio chunk, and seconds of
  audio per second of wall time to the last chunk (the medians of `--repeats` runs).

- `--exact-speedups`: each exact speed-up of generation timed against the code before it in
  the same run, the same generation with the speed-up switched off and on in turn (pairs
  interleaved, medians of `--repeats`), the tokens (or the audio) checked identical:
  lone_slot (1 slot: slot attention without query and key; sampling time), decode_per_stem
  (`--speedup-slots` stems decoded one at a time on a CPU; decoding time) and
  fused_codebooks (settings per codebook, all codebooks sampled in one pass; sampling time).
  Each prints old and new seconds and new/old. `--without-speedups` switches them all off
  for the main figures (the code before them, to compare two runs' rtf).

- `--quantize int8`: `StemGenerator(quantize="int8")` (int8 dynamic quantisation of the
  transformer's Linear layers, CPU only) against float in the same run, `--speedup-slots`
  slots, the pairs interleaved (medians of `--repeats`): sampling seconds, int8/float, and the
  token agreement (the share of tokens equal for the same seed) with the default settings and
  greedy. `--quantize-model M` compares a trained model (a run folder or a bundled name,
  generator-mini) instead of the random one: random weights time like trained ones, but
  their flat logits understate the agreement.

`--json F` writes {"device": str, "rtf": {"1": x, ...}, "kv_speedup": y,
"time_to_first_audio": {"1": s, ...}, "rtf_stream": {"1": x, ...}, "details": {...}}
(details["exact_speedups"] with `--exact-speedups`, details["quantize"] with `--quantize`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from stemcodec import StemGenerator
from stemcodec.checkpoint import bundled, state_hash
from stemcodec.codec import DEBUG_CONFIG, MINI_CONFIG, Codec, build_encodec, load_codec
from stemcodec.config import from_dict
from stemcodec.generation.threads import cpu_name
from stemcodec.model import (
    ModelConfig,
    MultiStreamTransformer,
    SamplingConfig,
    generate_codes,
    sampling,
)
from stemcodec.model.sampling import sample_logits
from stemcodec.model.transformer import SlotAttention

ROOT = Path(__file__).resolve().parents[1]

# peak memory bandwidth in bytes/s by (a piece of) torch.cuda.get_device_name
BANDWIDTH = [("GH200", 4.0e12), ("H200", 4.8e12), ("H100 NVL", 3.9e12), ("H100 PCIe", 2.0e12),
             ("H100", 3.35e12), ("A100-SXM4-80GB", 2.039e12), ("A100 80GB PCIe", 1.935e12),
             ("A100", 1.555e12), ("L40S", 0.864e12), ("L40", 0.864e12), ("L4", 0.3e12),
             ("A10G", 0.6e12), ("A10", 0.6e12), ("RTX 4090", 1.008e12), ("RTX 3090", 0.936e12),
             ("V100", 0.9e12), ("T4", 0.32e12)]


def model_config(path: str, codec: Codec) -> ModelConfig:
    import yaml
    data = yaml.safe_load(Path(path).read_text()).get("model", {})
    data.update(num_codebooks=codec.num_codebooks, cardinality=codec.cardinality)
    return from_dict(ModelConfig, data)


def make_codec(name: str) -> Codec:
    """The mini (or debug) codec layout with random weights, wrapped as load_codec wraps it,
    or the bundled codec-mini."""
    if name == "bundled":
        return load_codec(str(bundled("codec-mini")))
    cfg = {"mini": MINI_CONFIG, "debug": DEBUG_CONFIG}[name]
    torch.manual_seed(1234)
    model = build_encodec(cfg)
    return Codec(model, name, cfg["target_bandwidths"][-1], state_hash(model.state_dict()))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def instruments(slots: int, device: torch.device) -> torch.Tensor:
    return torch.arange(slots, device=device)[None]  # [1, K]


def slot_names(model, slots: int) -> str:
    """The first `slots` instruments of the model's vocabulary, as `--slots` lists them."""
    return ",".join(model.config.vocabulary[:slots])


def time_generation(model, codec, slots: int, frames: int, repeats: int) -> dict:
    """Median seconds to generate `frames` of `slots` slots with StemGenerator (what the CLI
    runs), split into sampling and decoding."""
    generator = StemGenerator(model, codec, device=next(model.parameters()).device)
    runs = [generator.generate(slot_names(model, slots), frames / codec.frame_rate, seed=r).timing
            for r in range(repeats)]
    gen, dec = [t["sample_s"] for t in runs], [t["decode_s"] for t in runs]
    cpu_gen, cpu_dec = [t["sample_cpu_s"] for t in runs], [t["decode_cpu_s"] for t in runs]
    total = [a + b for a, b in zip(gen, dec)]
    cpu_total = [a + b for a, b in zip(cpu_gen, cpu_dec)]
    return {"generate_s": statistics.median(gen), "decode_s": statistics.median(dec),
            "total_s": statistics.median(total), "cpu_generate_s": statistics.median(cpu_gen),
            "cpu_decode_s": statistics.median(cpu_dec), "cpu_total_s": statistics.median(cpu_total),
            "cpu_share": statistics.median(c / w for c, w in zip(cpu_total, total))}


def time_stream(model, codec, slots: int, frames: int, repeats: int) -> dict:
    """Median seconds from calling `StemGenerator.stream` (what `generate --stream` runs) to
    its first audio chunk, and to its last: all the chunks taken as fast as they come."""
    generator = StemGenerator(model, codec, device=next(model.parameters()).device)
    first, wall = [], []
    for r in range(repeats):
        start = time.perf_counter()
        chunks = generator.stream(slot_names(model, slots), frames / codec.frame_rate, seed=r)
        for _ in chunks:
            if len(first) == r:
                first.append(time.perf_counter() - start)
        wall.append(time.perf_counter() - start)
    return {"time_to_first_audio_s": statistics.median(first),
            "stream_s": statistics.median(wall), "block_frames": chunks.block_frames}


# -- the exact speed-ups, each with its switch (True: on, the default) -------------------------
def lone_slot(on: bool) -> None:
    SlotAttention.lone_slot_shortcut = on


def decode_per_stem(on: bool) -> None:
    StemGenerator.decode_per_stem = None if on else False  # None: per stem on a CPU


def fused_codebooks(on: bool) -> None:
    sampling.FUSE_CODEBOOKS = on


SPEEDUPS = {"lone_slot": lone_slot, "decode_per_stem": decode_per_stem,
            "fused_codebooks": fused_codebooks}


def time_speedup(name: str, model, codec, slots: int, frames: int, repeats: int,
                 **options) -> dict:
    """`StemGenerator.generate` with speed-up `name` off, then on, `repeats` pairs in turn;
    the median seconds of what it speeds up (decoding for decode_per_stem, sampling for the
    others), new/old, and whether the tokens and the audio stayed the same."""
    switch = SPEEDUPS[name]
    generator = StemGenerator(model, codec, device=next(model.parameters()).device)
    part = "decode_s" if name == "decode_per_stem" else "sample_s"
    times: dict[bool, list[float]] = {False: [], True: []}
    outputs = {}
    try:
        for r in range(repeats):
            for on in (False, True):
                switch(on)
                out = generator.generate(slot_names(model, slots), frames / codec.frame_rate,
                                         seed=r, **options)
                times[on].append(out.timing[part])
                if r == 0:
                    outputs[on] = out
    finally:
        switch(True)
    old, new = (statistics.median(times[on]) for on in (False, True))
    before, after = outputs[False], outputs[True]
    audio = max((before.decoded[s] - after.decoded[s]).abs().max().item()
                for s in before.decoded)
    return {"slots": slots, "timed": part, "old_s": old, "new_s": new, "new_over_old": new / old,
            "tokens_identical": torch.equal(before.codes, after.codes),
            "audio_max_difference": audio}


def exact_speedups(model, codec, frames: int, repeats: int, slots: int) -> dict:
    """Each speed-up against the code without it, where it applies (see the docstring)."""
    per_codebook = [1.0] * codec.num_codebooks  # the default settings, given per codebook
    runs = {"lone_slot": time_speedup("lone_slot", model, codec, 1, frames, repeats),
            "decode_per_stem": time_speedup("decode_per_stem", model, codec, slots, frames,
                                            repeats),
            "fused_codebooks": time_speedup("fused_codebooks", model, codec, slots, frames,
                                            repeats, temperature=per_codebook)}
    for name, run in runs.items():
        same = "tokens identical" if run["tokens_identical"] else "TOKENS DIFFER"
        print(f"  {name} ({run['slots']} slot(s), {run['timed'][:-2]}): {run['old_s']:.3f} s -> "
              f"{run['new_s']:.3f} s, new/old {run['new_over_old']:.2f}; {same}, audio within "
              f"{run['audio_max_difference']:.1e}")
    return runs


@torch.inference_mode()
def quantized_against_float(model, codec, slots: int, frames: int, repeats: int,
                            quantize: str, checkpoint: str | None = None) -> dict:
    """int8 against float: sampling seconds (pairs interleaved, medians) and the share of
    tokens equal for the same seed, default settings and greedy (see the docstring)."""
    if checkpoint is None:
        gens = {"float": StemGenerator(model, codec, device="cpu"),
                "int8": StemGenerator(model, codec, device="cpu", quantize=quantize)}
    else:
        gens = {"float": StemGenerator.from_pretrained(checkpoint, device="cpu"),
                "int8": StemGenerator.from_pretrained(checkpoint, device="cpu",
                                                      quantize=quantize)}
        model, codec = gens["float"]._fixed.model, gens["float"]._fixed.codec
    trained = (model.training_info or {}).get("instruments") or model.config.vocabulary
    names = ",".join([n for n in model.config.vocabulary if n in trained][:slots])
    seconds = frames / codec.frame_rate
    for g in gens.values():  # warm-up: the quantized kernels pack their weights on first use
        g.generate(names, 16 / codec.frame_rate)
    times: dict[str, list[float]] = {"float": [], "int8": []}
    agreement = []
    for r in range(repeats):
        codes = {}
        for name, g in gens.items():
            out = g.generate(names, seconds, seed=r)
            times[name].append(out.timing["sample_s"])
            codes[name] = out.codes
        agreement.append((codes["float"] == codes["int8"]).float().mean().item())
    greedy = [g.generate(names, seconds, seed=0, temperature=0).codes for g in gens.values()]
    old, new = (statistics.median(times[n]) for n in ("float", "int8"))
    return {"quantize": quantize, "model": checkpoint or "random", "slots": names,
            "timed": "sample_s", "float_s": old, "int8_s": new, "int8_over_float": new / old,
            "token_agreement": statistics.mean(agreement),
            "token_agreement_greedy": (greedy[0] == greedy[1]).float().mean().item()}


def recompute_step_s(model, slots: int, prefix: int, steps: int) -> tuple[float, float]:
    """(recompute, cached) seconds per step at delayed positions [prefix, prefix + steps): the
    work of one `generate_codes` step with use_cache False / True (forward, then sampling)."""
    cfg = model.config
    device = next(model.parameters()).device
    inst = instruments(slots, device)
    g = torch.Generator(device=device).manual_seed(0)
    seq = torch.randint(0, cfg.cardinality, (1, slots, cfg.num_codebooks, prefix + steps),
                        generator=g, device=device)
    sampling = SamplingConfig()
    present = torch.ones(1, slots, dtype=torch.bool, device=device)

    def full(p: int) -> None:
        logits = model(seq[..., :p], inst, present)[..., -1, :]
        sample_logits(logits, sampling, g)

    cache = model.new_cache(1, slots, max_frames=prefix + steps)
    model(seq[..., :prefix - 1], inst, present, cache=cache, start=0)  # fill the cache

    def cached(p: int) -> None:
        logits = model(seq[..., p - 1:p], inst, present, cache=cache, start=p - 1)[..., -1, :]
        sample_logits(logits, sampling, g)

    out = []
    for step in (full, cached):
        step(prefix)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for p in range(prefix, prefix + steps):
            step(p)
        sync(device)
        out.append((time.perf_counter() - t0) / steps)
    return out[0], out[1]


def kv_speedup(model, slots: int, frames: int, cached_s: float, points: int, steps: int,
               full_run: bool) -> dict:
    """Recompute time of the whole generation (measured or integrated) over `cached_s`."""
    Q = model.config.num_codebooks
    length = frames + Q  # generate_codes runs steps p = 1 .. length - 1, a prefix of p each
    if full_run:
        device = next(model.parameters()).device
        sync(device)
        t0 = time.perf_counter()
        generate_codes(model, instruments(slots, device), frames, SamplingConfig(),
                       generator=torch.Generator(device=device).manual_seed(0), use_cache=False)
        sync(device)
        recompute = time.perf_counter() - t0
        how = "recompute run in full"
        end = None
    else:
        last = length - steps
        prefixes = sorted({max(2, round(last * (i + 1) / points)) for i in range(points)})
        timed = [(p, *recompute_step_s(model, slots, p, steps)) for p in prefixes]
        # linear between the timed prefixes, flat before the first and after the last
        xs, ys = [p for p, _, _ in timed], [r for _, r, _ in timed]
        recompute = sum(interpolate(p, xs, ys) for p in range(1, length))
        end = {"prefix": timed[-1][0], "recompute_step_s": timed[-1][1],
               "cached_step_s": timed[-1][2], "ratio": timed[-1][1] / timed[-1][2]}
        how = (f"recompute estimated: {steps} steps timed at each prefix in {prefixes}, "
               f"interpolated over all {length - 1} steps")
    return {"slots": slots, "recompute_s": recompute, "cached_s": cached_s,
            "kv_speedup": recompute / cached_s, "how": how, "end_of_sequence": end}


def interpolate(x: float, xs: list[float], ys: list[float]) -> float:
    """Piecewise-linear y(x) through (xs, ys), xs increasing; flat outside them."""
    if x <= xs[0]:
        return ys[0]
    for x0, x1, y0, y1 in zip(xs, xs[1:], ys, ys[1:]):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return ys[-1]


def gpu_floor(model, slots: int, frames: int, device: str = "cuda",
              copy_mib: int = 1024) -> dict:
    """Seconds per cached step on `device` against bytes read per step / memory bandwidth.

    A step reads every weight once (the embedding tables only in the rows it gathers), and
    the keys and values of every earlier position; the floor counts the mean position.
    """
    device = torch.device(device)
    model = model.to(device)
    cfg = model.config
    inst = instruments(slots, device)
    generate_codes(model, inst, 8, SamplingConfig(), generator=torch.Generator(device).manual_seed(0))
    steps = frames + cfg.num_codebooks - 1
    sync(device)
    t0 = time.perf_counter()
    generate_codes(model, inst, frames, SamplingConfig(),
                   generator=torch.Generator(device).manual_seed(0))
    sync(device)
    step_s = (time.perf_counter() - t0) / steps
    size = next(model.parameters()).element_size()
    tables = model.tokens.weight.numel() + model.instrument.weight.numel()
    weights = (model.num_parameters() - tables) * size
    gathered = (cfg.num_codebooks + 1) * slots * cfg.dim * size  # embedding rows of one step
    mean_position = (steps + 1) / 2
    kv = 2 * cfg.num_layers * slots * cfg.dim * mean_position * size
    read = weights + gathered + kv
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    table = next((bw for key, bw in BANDWIDTH if key in name), None)
    big = torch.empty(copy_mib * 2**18, dtype=torch.float32, device=device)
    copy = torch.empty_like(big)
    copy.copy_(big)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(10):
        copy.copy_(big)
    sync(device)
    measured = 10 * 2 * big.numel() * 4 / (time.perf_counter() - t0)  # read + write
    del big, copy
    bandwidth = table or measured
    floor = read / bandwidth
    model.to("cpu")
    return {"device": name, "slots": slots, "step_s": step_s, "bytes_per_step": read,
            "bandwidth_table": table, "bandwidth_copy": measured, "floor_s": floor,
            "step_over_floor": step_s / floor}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "mini.yaml"))
    parser.add_argument("--codec", choices=["mini", "debug", "bundled"], default="mini")
    parser.add_argument("--slots", type=int, nargs="+", default=[1, 2, 4, 6])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of audio")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--kv-slots", type=int, default=4)
    parser.add_argument("--kv-points", type=int, default=4, help="prefix lengths timed")
    parser.add_argument("--kv-steps", type=int, default=5, help="steps timed at each")
    parser.add_argument("--kv-full", action="store_true", help="run the recompute in full")
    parser.add_argument("--no-gpu", action="store_true")
    parser.add_argument("--exact-speedups", action="store_true",
                        help="time each exact speed-up against the code without it")
    parser.add_argument("--speedup-slots", type=int, default=4,
                        help="slots of the decode_per_stem, fused_codebooks and "
                             "--quantize timings")
    parser.add_argument("--without-speedups", action="store_true",
                        help="the main figures with every exact speed-up switched off")
    parser.add_argument("--quantize", choices=["int8"], default=None,
                        help="time the int8-quantized model against float, token agreement")
    parser.add_argument("--quantize-model", default=None, metavar="MODEL",
                        help="with --quantize: a trained model (run folder, generator-mini)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        for switch in SPEEDUPS.values():
            switch(not args.without_speedups)
        return measure(args)
    finally:  # a caller in the same process (the tests) gets them back on
        for switch in SPEEDUPS.values():
            switch(True)


def measure(args: argparse.Namespace) -> dict:
    codec = make_codec(args.codec)
    torch.manual_seed(0)
    model = MultiStreamTransformer(model_config(args.config, codec)).eval()
    frames = max(1, round(args.duration * codec.frame_rate))
    device = f"cpu ({torch.get_num_threads()} threads): {cpu_name()}"
    print(f"{device}; {model.num_parameters() / 1e6:.1f} M parameters; codec {args.codec}; "
          f"{args.duration:g} s = {frames} frames")
    # warm-up: first calls allocate and pick kernels
    StemGenerator(model, codec, device="cpu").generate(slot_names(model, max(args.slots)),
                                                       16 / codec.frame_rate)

    runs, rtf, first_audio, rtf_stream = {}, {}, {}, {}
    for slots in args.slots:
        run = time_generation(model, codec, slots, frames, args.repeats)
        runs[str(slots)] = run
        rtf[str(slots)] = args.duration / run["total_s"]
        print(f"{slots} slot(s): generate {run['generate_s']:.2f} s "
              f"({run['generate_s'] / (frames + codec.num_codebooks - 1) * 1e3:.2f} ms/step), "
              f"decode {run['decode_s']:.2f} s, rtf {rtf[str(slots)]:.2f}x real time; "
              f"CPU time {run['cpu_generate_s']:.2f} + {run['cpu_decode_s']:.2f} s "
              f"(CPU/wall {run['cpu_share']:.2f})")
        streamed = time_stream(model, codec, slots, frames, args.repeats)
        run["stream"] = streamed
        first_audio[str(slots)] = streamed["time_to_first_audio_s"]
        rtf_stream[str(slots)] = args.duration / streamed["stream_s"]
        print(f"  streamed: first audio after {first_audio[str(slots)]:.2f} s, "
              f"rtf {rtf_stream[str(slots)]:.2f}x real time "
              f"({streamed['block_frames']} frames a chunk)")

    key = str(args.kv_slots)
    cached = runs[key]["generate_s"] if key in runs else \
        time_generation(model, codec, args.kv_slots, frames, args.repeats)["generate_s"]
    kv = kv_speedup(model, args.kv_slots, frames, cached, args.kv_points, args.kv_steps,
                    args.kv_full)
    print(f"kv cache, {args.kv_slots} slots, {args.duration:g} s: recompute {kv['recompute_s']:.1f} s"
          f" vs cache {cached:.2f} s -> {kv['kv_speedup']:.1f}x ({kv['how']})")
    if kv["end_of_sequence"]:
        end = kv["end_of_sequence"]
        print(f"  one step at position {end['prefix']}: recompute "
              f"{end['recompute_step_s'] * 1e3:.1f} ms vs cache {end['cached_step_s'] * 1e3:.2f} ms"
              f" -> {end['ratio']:.1f}x")

    details = {"runs": runs, "kv": kv, "threads": torch.get_num_threads(),
               "duration_s": args.duration, "codec": args.codec,
               "speedups": "off" if args.without_speedups else "on"}
    if args.exact_speedups:
        print(f"exact speed-ups, each against the code without it ({args.duration:g} s, "
              f"median of {args.repeats}):")
        details["exact_speedups"] = exact_speedups(model, codec, frames, args.repeats,
                                                   args.speedup_slots)
    if args.quantize:
        q = quantized_against_float(model, codec, args.speedup_slots, frames, args.repeats,
                                    args.quantize, args.quantize_model)
        details["quantize"] = q
        print(f"{q['quantize']} against float ({q['model']} model, {q['slots']}, "
              f"{args.duration:g} s, median of {args.repeats}): sampling {q['float_s']:.2f} s "
              f"-> {q['int8_s']:.2f} s ({q['int8_over_float']:.2f}x the time); tokens equal "
              f"{q['token_agreement']:.3f} (greedy {q['token_agreement_greedy']:.3f})")
    if torch.cuda.is_available() and not args.no_gpu:
        gpu = gpu_floor(model, args.kv_slots, frames)
        details["gpu"] = gpu
        print(f"gpu {gpu['device']}, {gpu['slots']} slots: {gpu['step_s'] * 1e3:.2f} ms/step vs "
              f"floor {gpu['floor_s'] * 1e6:.1f} us ({gpu['bytes_per_step'] / 1e6:.1f} MB at "
              f"{(gpu['bandwidth_table'] or gpu['bandwidth_copy']) / 1e12:.2f} TB/s"
              f"{'' if gpu['bandwidth_table'] else ', measured copy'}) -> "
              f"{gpu['step_over_floor']:.0f}x the floor")
    else:
        print("gpu: no CUDA device, skipped")

    result = {"device": device, "rtf": rtf, "kv_speedup": kv["kv_speedup"],
              "time_to_first_audio": first_audio, "rtf_stream": rtf_stream, "details": details}
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
