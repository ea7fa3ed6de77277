"""Timbre stability of a stem: do its seconds all sound like one instrument?

    stability = mean over active seconds of cos(e_i, mean_j e_j)

where e_i is the timbre embedding of second i, standardised (centred and scaled per
dimension) by fixed statistics of rendered stems, so the cosine compares how each second
departs from an average instrument. A stem that keeps its instrument scores high; one whose
second half is another instrument scores lower, since its mean embedding sits between two
clusters. Two embeddings:

    classifier  (default) the instrument classifier's penultimate layer: trained to tell the
                instruments apart whatever note they play, so a melody's changing pitch
                barely moves it while a change of instrument moves it far
    mfcc        fixed DSP, no model: MFCC 1-19 of the gain-normalised log-mel (16 kHz, 64
                bands), mean and standard deviation over the second (38 values); also moved
                by pitch and note density, hence a smaller gap between a stable stem and a
                switching one
"""

from __future__ import annotations

import functools

import torch
import torchaudio.functional as AF

from ..audio import resample
from .classifier import InstrumentClassifier
from .seconds import active_seconds, split_seconds
from .spectra import mel_power

MFCC_RATE = 16000


@functools.lru_cache(maxsize=1)
def _dct() -> torch.Tensor:
    return AF.create_dct(20, 64, "ortho")  # [64, 20]


def mfcc_embedding(segments: torch.Tensor, rate: int) -> torch.Tensor:
    """Mono segments `[N, L]` -> `[N, 38]`: mean and std over frames of MFCC 1-19 (c0, the
    level, left out; each segment's mel power divided by its mean first)."""
    x = resample(segments.float().cpu(), rate, MFCC_RATE)
    out = []
    for seg in x:
        mel = mel_power(seg, MFCC_RATE, 512, 160, 64, 30.0, 8000.0)  # [64, T]
        logmel = (mel / mel.mean().clamp_min(1e-12) + 1e-5).log()
        mfcc = (logmel.T @ _dct()).T[1:]  # [19, T]
        out.append(torch.cat([mfcc.mean(dim=1), mfcc.std(dim=1)]))
    return torch.stack(out) if out else torch.zeros(0, 38)


def stem_embeddings(wav: torch.Tensor, rate: int, embedding: str = "classifier",
                    model: InstrumentClassifier | None = None) -> torch.Tensor:
    """Standardised timbre embeddings `[N, D]` of the active seconds of `wav` `[C, S]`."""
    segments = split_seconds(wav, rate)
    segments = segments[active_seconds(segments)]
    if embedding == "mfcc":
        emb = mfcc_embedding(segments, rate)
        stats = (model.config.info.get("mfcc_stats") if model is not None else None) or {}
    elif embedding == "classifier":
        if model is None:
            raise ValueError("the classifier embedding needs the classifier model")
        emb = model.predict(segments, rate)[1]
        stats = model.config.info.get("embedding_stats") or {}
    else:
        raise ValueError(f"unknown timbre embedding '{embedding}' (classifier or mfcc)")
    return standardise(emb, stats)


def standardise(emb: torch.Tensor, stats: dict[str, list[float]]) -> torch.Tensor:
    """(emb - mean) / std with the fixed corpus statistics `{"mean": [...], "std": [...]}`;
    unchanged when none are given."""
    if not stats:
        return emb
    mean, std = torch.tensor(stats["mean"]), torch.tensor(stats["std"])
    return (emb - mean) / std.clamp_min(1e-6)


def timbre_stability(embeddings: torch.Tensor) -> float | None:
    """Mean cosine similarity of per-second embeddings `[N, D]` to their mean; None if N = 0."""
    if embeddings.shape[0] == 0:
        return None
    centre = embeddings.mean(dim=0, keepdim=True)
    return float(torch.nn.functional.cosine_similarity(embeddings, centre, dim=-1).mean())


def corpus_stats(embeddings: torch.Tensor) -> dict[str, list[float]]:
    """The fixed statistics `standardise` uses, from embeddings `[N, D]` of many stems."""
    return {"mean": [round(v, 6) for v in embeddings.mean(dim=0).tolist()],
            "std": [round(v, 6) for v in embeddings.std(dim=0).tolist()]}
