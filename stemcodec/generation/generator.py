"""StemGenerator: a trained model and its codec, from slots and settings to stems and a mix.

    g = StemGenerator.from_pretrained()          # bundled default; or a run folder
    out = g.generate(slots="vocals-free:4", duration=10.0, seed=0)

A generation runs in four steps, each its own method so a stream can take them in turn:
`_plan` (check the settings, load the model the slots call for, encode what is given),
`_frames` (the sampler, one frame at a time), `_decode` (codes to audio) and `_outputs`.
`stream` (streaming.py) decodes each frame as `_frames` finishes it, instead of `_decode`.
"""

from __future__ import annotations

import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..checkpoint import bundled, file_sha256
from ..conditions import Conditions, parse_keep, parse_pairs, read_conditions
from ..errors import UserError
from ..slots import SlotSpec, check_instruments, parse_slots
from .objects import ObjectPlan, plan_objects
from .output import GenerationOutput
from .settings import Pairs, PathLike, Settings
from .threads import choose as choose_threads
from .threads import using

if TYPE_CHECKING:
    from ..codec import Codec
    from ..model import MultiStreamTransformer, SamplingConfig
    from .streaming import GenerationStream

DEFAULT_MODEL = "generator-mini"  # the band: drums, bass, guitar, piano, other
SOLO_MODEL = "generator-solo-piano"  # the single-instrument mode, for slots="solo-piano"
RECIPES = {DEFAULT_MODEL: ("configs/mini.yaml", "runs/mini"),
           SOLO_MODEL: ("configs/solo-piano.yaml", "runs/solo-piano")}


def default_model(slots: str) -> str:
    """The bundled model for these slots: one piano alone is the solo-piano generator's."""
    try:
        names = parse_slots(slots).names
    except UserError:
        names = ()  # the chosen model's vocabulary will name what is wrong
    return SOLO_MODEL if tuple(names) == ("piano",) else DEFAULT_MODEL


def resolve_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


QUANTIZE = ("int8",)  # what `quantize` / --quantize takes; None: the float model


def check_threads(threads: int | None) -> int | None:
    if threads is None:
        return None
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise UserError(f"threads {threads!r}: a whole number of CPU threads, at least 1 "
                        "(or None: the fastest, measured once on this machine)")
    return threads


def check_quantize(quantize: str | None, device: torch.device) -> None:
    """A `quantize` value the generator can apply on `device`, checked before a model loads."""
    if quantize is None:
        return
    if quantize not in QUANTIZE:
        raise UserError(f"--quantize {quantize}: unknown; give int8 (or leave it out for the "
                        "float model)")
    if device.type != "cpu":
        # PyTorch's dynamic int8 Linear kernels (fbgemm, qnnpack) run on the CPU only
        raise UserError(f"--quantize {quantize} is for CPU inference, not {device}; add "
                        "--device cpu, or drop --quantize")


def quantize_model(model: MultiStreamTransformer, quantize: str | None) -> MultiStreamTransformer:
    """`model` with its Linear layers dynamically quantized (int8 weights, activations
    quantized per call), as a copy: the float model is left as it is. Only the transformer:
    the codec stays float. None: `model` itself."""
    if quantize is None:
        return model
    with warnings.catch_warnings():
        # torch.ao.quantization is deprecated in favour of torchao, which this project does
        # not depend on; the eager API still works in the torch it pins
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear},
                                                      dtype=torch.qint8)


def checkpoint_folder(checkpoint: PathLike) -> Path:
    """The model folder of a run folder, a training checkpoint (step_*/model) or a bundled
    model's name."""
    path = Path(checkpoint)
    for folder in (path, path / "model"):
        if (folder / "config.json").is_file():
            return folder
    if not path.exists() and bundled(str(checkpoint)) is not None:
        return bundled(str(checkpoint))
    raise UserError(f"--checkpoint {checkpoint}: no config.json there; pass a folder written "
                    "by train/train.py (it holds model.safetensors and config.json)")


def load_codec_for(model: MultiStreamTransformer, codec_repo: PathLike | None,
                   device: torch.device) -> Codec:
    """The codec whose tokens the model was trained on, checked by its weights id."""
    from ..codec import load_codec
    info = model.codec_info or {}
    if not info.get("name"):
        raise UserError("the checkpoint does not say which codec made its tokens")
    name = info.get("source") or info["name"]  # a codec checkpoint folder is found by its path
    codec = load_codec(name, info.get("bandwidth"), repository=codec_repo, device=device,
                       codec_id=info.get("id"))
    if info.get("id") and not codec.makes(info["id"]):
        raise UserError(f"the checkpoint was trained on codec {info['id']}, but {info['name']} "
                        f"here is {codec.codec_id}; use the same codec weights (--codec-repo)")
    return codec


@dataclass
class Loaded:
    """A model with its codec and where it came from."""

    model: MultiStreamTransformer
    codec: Codec
    checkpoint: str | None = None
    sha256: str | None = None  # of model.safetensors, first 16 hex digits


@dataclass
class Plan:
    """A checked request: everything the sampler and the decoder need."""

    settings: Settings
    loaded: Loaded
    names: tuple[str, ...]  # the slots ("mix" for a mix-mode model)
    instrument: torch.Tensor  # [K] ids into the model's instruments
    frames: int
    window: int
    context: int | None
    conditions: Conditions
    sampling: SamplingConfig
    threads: int | None = None  # CPU threads (StemGenerator._threads); None: left as they are
    objects: ObjectPlan | None = None  # each slot's instrument object (a model with objects)

    @property
    def mixed(self) -> bool:
        return self.loaded.model.config.mode == "mix"


class StemGenerator:
    """Generates stems that play together, and their mix, from a trained model.

    Make one with `from_pretrained`; `StemGenerator(model, codec)` wraps a model in memory.
    """

    # Decode the stems one at a time (True) or as one batch (False); None: one at a time on a
    # CPU, where it was measured faster (issue 14: 10 s of 4 stems in 0.64 s against 1.25 s
    # as one batch, the bundled codec on one thread), and as one batch on an accelerator.
    # A stem's audio does not depend on the others of a batch: the same either way, to float
    # rounding.
    decode_per_stem: bool | None = None

    def __init__(self, model: MultiStreamTransformer | None = None, codec: Codec | None = None,
                 *, device: str | torch.device = "auto",
                 codec_repo: PathLike | None = None, checkpoint: str | None = None,
                 quantize: str | None = None, threads: int | None = None) -> None:
        """A generator of `model` with `codec` (default: the codec its checkpoint names).

        Args:
            model, codec: a MultiStreamTransformer and its Codec; model None: the bundled
                model the slots call for, loaded when first asked for.
            device: auto (cuda if there is one), cpu, cuda ...
            codec_repo: folder of the codec's weights, when not in the default place.
            checkpoint: where `model` came from (recorded in meta).
            quantize: "int8": int8 dynamic quantisation of the transformer's Linear layers
                (CPU only; `model` itself stays float); None: float. Recorded in meta.
            threads: torch CPU threads for generating and decoding; None: the fastest of 1, 2
                and all cores for this model and slot count, measured on the first call and
                remembered for this machine (threads.py). Recorded in meta.
        """
        self.device = resolve_device(device)
        check_quantize(quantize, self.device)
        self.threads = check_threads(threads)
        self.quantize = quantize
        self.codec_repo = codec_repo
        self._fixed: Loaded | None = None
        self._bundled: dict[str, Loaded] = {}
        if model is not None:
            model = quantize_model(model.to(self.device).eval(), quantize)
            if codec is None:
                codec = load_codec_for(model, codec_repo, self.device)
            weights = Path(checkpoint) / "model.safetensors" if checkpoint else None
            sha = file_sha256(weights)[:16] if weights is not None and weights.is_file() else None
            self._fixed = Loaded(model, codec.to(self.device), checkpoint, sha)

    @classmethod
    def from_pretrained(cls, checkpoint: PathLike | None = None, *,
                        device: str | torch.device = "auto",
                        codec_repo: PathLike | None = None,
                        quantize: str | None = None,
                        threads: int | None = None) -> StemGenerator:
        """A generator from a run folder (what train/train.py writes), a training checkpoint
        (`checkpoints/step_N`), a bundled model's name, or None: the bundled default, the
        solo-piano model for `slots="solo-piano"` and the band model otherwise.
        `quantize`, `threads`: see `StemGenerator`."""
        if checkpoint is None:
            return cls(device=device, codec_repo=codec_repo, quantize=quantize,
                       threads=threads)
        from ..model import MultiStreamTransformer
        folder = checkpoint_folder(checkpoint)
        device = resolve_device(device)
        check_quantize(quantize, device)  # before the weights are read
        model = MultiStreamTransformer.from_pretrained(folder, device=device)
        return cls(model, load_codec_for(model, codec_repo, device), device=device,
                   codec_repo=codec_repo, checkpoint=str(folder), quantize=quantize,
                   threads=threads)

    def model_for(self, slots: str) -> Loaded:
        """The model these slots are generated with (the bundled one they call for, if none
        was given), loaded once."""
        if self._fixed is not None:
            return self._fixed
        name = default_model(slots)
        if name not in self._bundled:
            path = bundled(name)
            if path is None:
                config, run = RECIPES[name]
                raise UserError(
                    f"no bundled {name} model in this install; train one with `accelerate "
                    f"launch train/train.py --config {config}` and pass --checkpoint {run} "
                    "(scripts/train_bundled.sh rebuilds the bundled ones)")
            self._bundled[name] = StemGenerator.from_pretrained(
                path, device=self.device, codec_repo=self.codec_repo,
                quantize=self.quantize, threads=self.threads)._fixed
        return self._bundled[name]

    # -- the API ------------------------------------------------------------------------------
    def generate(self, slots: str = "vocals-free:4", duration: float = 10.0, seed: int = 0, *,
                 given: Pairs | None = None, prompt: Pairs | None = None,
                 given_mix: PathLike | None = None, keep: str | Sequence[str] | None = None,
                 temperature: float | Sequence[float] | str = 1.0,
                 top_k: int | Sequence[int] | str = 250,
                 top_p: float | Sequence[float] | str = 0.0, cfg: float = 1.0,
                 window: float | None = None, context: float | None = None,
                 separator: Any = "htdemucs_6s", demucs_repo: PathLike | None = None,
                 instrument: Mapping[str, str] | str | None = None,
                 timbre: Pairs | None = None,
                 progress: bool = False) -> GenerationOutput:
        """Generate `duration` seconds of `slots`. Same seed, same tensors.

        Args:
            slots: PRESET[:N] or a list ("drums,bass,piano"); a mix-mode model makes one
                stream of the whole mix and reads no slots.
            given: {slot: audio file} stems to accompany: their tokens are forced, the other
                slots fit them.
            prompt: {slot: audio file} openings to continue.
            given_mix: a mix to separate (with `separator`, Demucs weights in `demucs_repo`);
                its `keep` stems (default drums, bass) are given, the others regenerated.
            temperature, top_k, top_p: 0 = greedy / off; one value or one per codebook.
            cfg: classifier-free guidance over the given stems (1 = off, e.g. 3).
            window: the most seconds the model sees at once (default: its training window);
                longer durations slide, keeping `context` seconds (default 3/4 of it, at
                least 8 s where that leaves 2 s to slide by).
            instrument: {slot: object name} (`--list-instruments`), e.g.
                {"guitar": "nylon-guitar"}: what a slot plays (a model with objects only);
                a slot asked for nothing draws an instrument of its family, seeded.
            timbre: {slot: audio file}: a reference clip of the instrument a slot plays.
            progress: a progress bar of the sampling steps on stderr.
        Raises UserError (one line) for anything the caller can fix.
        """
        settings = Settings(slots=slots, duration=duration, given=given or {},
                            prompt=prompt or {}, given_mix=given_mix, keep=keep,
                            temperature=temperature, top_k=top_k, top_p=top_p, cfg=cfg,
                            window=window, context=context, separator=separator,
                            demucs_repo=demucs_repo, instrument=instrument,
                            timbre=timbre or {})
        return self._generate([seed], settings, progress)[0]

    def generate_batch(self, seeds: Sequence[int], slots: str = "vocals-free:4",
                       duration: float = 10.0, *, progress: bool = False,
                       **options: Any) -> list[GenerationOutput]:
        """One piece per seed, sampled together as a batch; the options are `generate`'s.
        Piece i is `generate(seed=seeds[i])`: each row draws from its own seed."""
        if len(seeds) < 1:
            raise UserError("generate_batch needs at least one seed")
        settings = Settings(slots=slots, duration=duration, **options)
        return self._generate(list(seeds), settings, progress)

    def stream(self, slots: str = "vocals-free:4", duration: float = 10.0, seed: int = 0, *,
               block: float | None = None, progress: bool = False,
               **options: Any) -> GenerationStream:
        """`generate`, as an iterator of audio chunks made while the tokens are sampled.

        The options are `generate`'s, checked (and the model loaded, given stems encoded)
        before this returns. Iterate over it for `StreamChunk`s (`chunk.mix`, `chunk.stems`
        at the stream's levels, `chunk.decoded` at the model's); once it has run to the end,
        `.output` is the GenerationOutput `generate` returns for this seed (the same audio,
        to float rounding). `block`: seconds of audio per chunk (default 0.5): shorter comes
        sooner, longer costs less decoding. See streaming.py for the stream's levels.
        """
        from .streaming import GenerationStream
        started = time.perf_counter()
        if block is not None and not (isinstance(block, (int, float)) and block > 0):
            raise UserError(f"block {block}: must be a positive number of seconds")
        settings = Settings(slots=slots, duration=duration, **options)
        return GenerationStream(self, self._plan(settings), seed, progress, block, started)

    # -- the steps ----------------------------------------------------------------------------
    def _generate(self, seeds: list[int], settings: Settings,
                  progress: bool) -> list[GenerationOutput]:
        plan = self._plan(settings)
        with using(plan.threads):
            wall, cpu = time.perf_counter(), time.process_time()
            codes = torch.stack(list(self._frames(plan, seeds, progress)), dim=-1)  # [B,K,Q,T]
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            sampled = time.perf_counter(), time.process_time()
            waves = self._decode(plan, codes)
        timing = {"sample_s": sampled[0] - wall, "sample_cpu_s": sampled[1] - cpu,
                  "decode_s": time.perf_counter() - sampled[0],
                  "decode_cpu_s": time.process_time() - sampled[1]}
        return self._outputs(plan, seeds, codes, waves, timing)

    def _plan(self, s: Settings) -> Plan:
        s.check()  # a typo is named before a bundled model is loaded
        loaded = self.model_for(s.slots)
        model, codec = loaded.model, loaded.codec
        cfg = model.config
        s.check_codebooks(cfg.num_codebooks)
        what = f"checkpoint {loaded.checkpoint or 'in memory'}"
        if cfg.mode == "mix":
            if s.pairs("given") or s.pairs("prompt") or s.given_mix is not None:
                raise UserError(f"{what} makes one stream of the whole mix (a mix-mode model); "
                                "it takes no given stems, prompts or mix to keep stems of")
            slots, ids = SlotSpec(("mix",)), [0]
        else:
            slots = parse_slots(s.slots, cfg.vocabulary, cfg.max_slots)
            # the instruments it was trained on (older checkpoints: its whole vocabulary)
            trained = (model.training_info or {}).get("instruments") or cfg.vocabulary
            check_instruments(slots.names, [n for n in cfg.vocabulary if n in trained], what)
            ids = slots.ids(cfg.vocabulary)
        given = parse_pairs(s.pairs("given"), "--given", slots)
        prompts = parse_pairs(s.pairs("prompt"), "--prompt", slots)
        objects = plan_objects(model, codec, slots, s.instrument,
                               parse_pairs(s.pairs("timbre"), "--timbre", slots), what)
        given_mix = None if s.given_mix is None else Path(s.given_mix)
        keep = parse_keep(s.keep_text, slots) if given_mix is not None else []
        frames = max(1, int(round(s.duration * codec.frame_rate)))
        window, context = window_frames(model, codec, s.window, s.context)
        separator = None
        if given_mix is not None:
            separator = s.separator
            if isinstance(separator, str):
                from ..separate import load_separator
                separator = load_separator(separator, s.demucs_repo, self.device)
        conditions = read_conditions(codec, slots, frames, given=given, prompts=prompts,
                                     given_mix=given_mix, keep=keep, separator=separator)
        check_guidance(model, conditions, s.cfg)
        from ..model import SamplingConfig
        plan = Plan(s, loaded, slots.names, torch.tensor(ids), frames, window, context,
                    conditions, SamplingConfig(s.temperature, s.top_k, s.top_p),
                    objects=objects)
        plan.threads = self._threads(plan)
        return plan

    def _threads(self, plan: Plan) -> int | None:
        """The CPU threads this plan runs on: the caller's, else the fastest remembered or
        measured for its model and slot count; None on an accelerator (left as it is)."""
        if self.device.type != "cpu":
            return None
        if self.threads is not None:
            return self.threads
        cfg = plan.loaded.model.config
        what = (f"dim {cfg.dim} layers {cfg.num_layers} heads {cfg.num_heads} "
                f"Q {cfg.num_codebooks} slot_attention {cfg.slot_attention} "
                f"slots {len(plan.names)} quantize {self.quantize} "
                f"codec {plan.loaded.codec.codec_id}")
        return choose_threads(what, lambda: self._probe(plan))

    def _probe(self, plan: Plan, frames: int = 16) -> None:
        """A short generation of this plan's model and slots, decoding included: what the
        thread count is chosen by."""
        from ..model import SamplingConfig
        from ..model.sampling import sample_frames
        made = [f for f in sample_frames(plan.loaded.model, plan.instrument[None], frames,
                                         SamplingConfig(),
                                         generator=torch.Generator(self.device).manual_seed(0),
                                         window=plan.window)
                if f is not None]
        self._decode(plan, torch.stack(made, dim=-1))

    def _frames(self, plan: Plan, seeds: list[int],
                progress: bool) -> Iterator[torch.Tensor]:
        """Codes [B, K, Q] of each frame as the sampler finishes it, one row per seed."""
        from ..model.sampling import sample_frames
        model = plan.loaded.model
        B = len(seeds)
        generators = [torch.Generator(device=self.device).manual_seed(int(s)) for s in seeds]
        c = plan.conditions
        objects = None if plan.objects is None else plan.objects.objects(seeds, self.device)
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=plan.frames + model.config.num_codebooks - 1, unit="step",
                       desc="generate", file=sys.stderr, dynamic_ncols=True)
        try:
            for frame in sample_frames(
                    model, plan.instrument[None].expand(B, -1), plan.frames, plan.sampling,
                    c.codes[None].expand(B, -1, -1, -1), c.known[None].expand(B, -1, -1),
                    generators, cfg_scale=plan.settings.cfg, window=plan.window,
                    context=plan.context, objects=objects):
                if bar is not None:
                    bar.update(1)
                if frame is not None:
                    yield frame
        finally:
            if bar is not None:
                bar.close()

    def _decode(self, plan: Plan, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, Q, T] -> audio [B, K, channels, samples] on the CPU: one stem at a time
        on a CPU, all of them as one batch elsewhere (see `decode_per_stem`)."""
        codec = plan.loaded.codec
        B, K = codes.shape[:2]
        rows = codes.flatten(0, 1)  # [B*K, Q, T]
        per_stem = self.decode_per_stem
        if per_stem is None:
            per_stem = codec.device.type == "cpu"
        if per_stem:
            wav = torch.cat([codec.decode(rows[i:i + 1]).cpu() for i in range(B * K)])
        else:
            wav = codec.decode(rows).cpu()
        return wav.view(B, K, codec.channels, -1)

    def _outputs(self, plan: Plan, seeds: list[int], codes: torch.Tensor, waves: torch.Tensor,
                 timing: dict[str, float]) -> list[GenerationOutput]:
        loaded, codec = plan.loaded, plan.loaded.codec
        meta = {"arguments": plan.settings.arguments(), "slots": list(plan.names),
                "checkpoint": loaded.checkpoint, "checkpoint_sha256": loaded.sha256,
                "codec": codec.codec_id, "frames": plan.frames, "frame_rate": codec.frame_rate,
                "window": plan.window, "context": plan.context,
                "conditions": plan.conditions.sources, "mode": loaded.model.config.mode,
                "device": str(self.device), "quantize": self.quantize,
                "threads": plan.threads}
        return [GenerationOutput.from_decoded(
                    {slot: waves[b, k] for k, slot in enumerate(plan.names)}, codec.sample_rate,
                    {**meta, "seed": seed,
                     **({} if plan.objects is None else plan.objects.meta(seed))},
                    codes[b].cpu(), mixed=plan.mixed, timing=timing)
                for b, seed in enumerate(seeds)]


def window_frames(model: MultiStreamTransformer, codec: Codec, window: float | None,
                  context: float | None) -> tuple[int, int | None]:
    """(window, context) in frames: the model's training window unless `window` says."""
    cfg = model.config
    largest = cfg.max_frames - cfg.num_codebooks
    trained = (model.training_info or {}).get("window")
    frames = int(round(window * codec.frame_rate)) if window else (trained or largest)
    if frames > largest:
        raise UserError(f"--window {window:g}: this model holds at most "
                        f"{largest / codec.frame_rate:.0f} s")
    kept = None if context is None else int(round(context * codec.frame_rate))
    if kept is not None and kept < 1:
        raise UserError(f"--context {context:g}: must hold at least one frame "
                        f"({1 / codec.frame_rate:.3f} s)")
    if kept is not None and kept >= frames:
        raise UserError(f"--context {context:g}: must be shorter than the window "
                        f"({frames / codec.frame_rate:g} s)")
    if kept is None:
        kept = default_context(frames, codec.frame_rate)
    return max(frames, 2), kept


def default_context(window: int, frame_rate: float) -> int:
    """Frames a sliding window keeps: 3/4 of it, and at least 8 s where that leaves 2 s to
    slide by (a 10 s window keeps 8 s; a 4 s one 3 s, as before)."""
    return max(3 * window // 4, min(int(round(8 * frame_rate)),
                                    window - int(round(2 * frame_rate))))


def check_guidance(model: MultiStreamTransformer, conditions: Conditions, scale: float) -> None:
    if scale == 1.0:
        return
    if not conditions.given_slots:
        raise UserError("--cfg guides the generated slots towards given stems; add --given or "
                        "--given-mix (a stem given for the whole duration)")
    if (model.training_info or {}).get("slot_dropout") is False:
        raise UserError("--cfg needs a model trained with slot dropout (data.p_all_slots < 1); "
                        "this checkpoint was not")

