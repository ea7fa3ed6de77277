"""A small instrument classifier: log-mel of a 1-s segment -> one of the slot names, and
(second level) the General MIDI family of the instrument playing.

    segment [N, L] at any rate -> 16 kHz -> log-mel [N, 1, 64, 101] (gain-normalised)
      -> 4 x (conv3x3, batch norm, ReLU, max-pool 2)  [N, 96, 4, 6]
      -> mean over time, flatten                      [N, 384]
      -> linear + ReLU: the embedding                  [N, 128]
      -> linear: logits                                [N, classes]          (the slot family)
      -> linear: object logits                         [N, object_families]  (the GM family)

The second head is there when `config.object_families` is not empty (OBJECT_FAMILIES: the
16 GM families of eight programs and `drums` for the kits); a classifier saved before it
has none and still loads: it labels families only, and the object figures are n/a.

Trained by `eval/train_classifier.py` on rendered stems (labels = the stem's slot and the GM
family of the stem's program in meta.json) and shipped in `stemcodec/assets/classifier/`
(model.safetensors + config.json). The embedding (penultimate layer) also serves the
Fréchet distance and, optionally, timbre stability.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from ..audio import resample
from ..checkpoint import bundled, load_pretrained, save_pretrained
from ..corpus.instruments import GM_GROUPS
from ..errors import UserError
from .spectra import mel_power

ASSET = "classifier"
TRAIN_HINT = ("train one with `python eval/train_classifier.py` or pass --classifier DIR "
              "(model.safetensors + config.json)")
# the second head's classes: the GM families of eight programs (corpus.instruments.gm_group)
# and the drum kits
OBJECT_FAMILIES: tuple[str, ...] = (*GM_GROUPS, "drums")


@dataclass
class ClassifierConfig:
    classes: list[str]
    sample_rate: int = 16000
    segment_seconds: float = 1.0
    n_fft: int = 512
    hop: int = 160
    n_mels: int = 64
    f_min: float = 30.0
    f_max: float = 8000.0
    widths: list[int] = field(default_factory=lambda: [16, 32, 64, 96])
    embedding: int = 128
    dropout: float = 0.2
    object_families: list[str] = field(default_factory=list)  # empty: no second head
    info: dict[str, Any] = field(default_factory=dict)  # how it was trained, held-out accuracy

    @property
    def segment_samples(self) -> int:
        return int(round(self.segment_seconds * self.sample_rate))


def _block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out),
                         nn.ReLU(), nn.MaxPool2d(2))


class InstrumentClassifier(nn.Module):
    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        widths = [1, *config.widths]
        self.blocks = nn.Sequential(*[_block(a, b) for a, b in zip(widths, widths[1:])])
        bands = config.n_mels // 2 ** len(config.widths)
        self.embed = nn.Sequential(nn.Flatten(), nn.Linear(widths[-1] * bands, config.embedding),
                                   nn.ReLU())
        self.drop = nn.Dropout(config.dropout)
        self.head = nn.Linear(config.embedding, len(config.classes))
        if config.object_families:
            self.object_head = nn.Linear(config.embedding, len(config.object_families))

    @property
    def has_objects(self) -> bool:
        """Whether it has the second head (the GM family of each second)."""
        return bool(self.config.object_families)

    def features(self, segments: torch.Tensor, rate: int) -> torch.Tensor:
        """Mono segments `[N, L]` at `rate` -> gain-normalised log-mel `[N, 1, n_mels, frames]`.

        Each segment's mel power is divided by its mean before the log, so the level of a
        stem never decides its label; the floor sits 50 dB under that mean.
        """
        cfg = self.config
        x = resample(segments.float().cpu(), rate, cfg.sample_rate)
        x = torch.nn.functional.pad(x, (0, max(0, cfg.segment_samples - x.shape[-1])))
        x = x[:, : cfg.segment_samples]
        mels = torch.stack([mel_power(s, cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels,
                                      cfg.f_min, cfg.f_max) for s in x])  # [N, M, T]
        mels = mels / mels.mean(dim=(1, 2), keepdim=True).clamp_min(1e-12)
        return (mels + 1e-5).log()[:, None]  # [N, 1, M, T]

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """feats `[N, 1, M, T]` -> (logits `[N, classes]`, embedding `[N, embedding]`)."""
        h = self.blocks(feats)  # [N, C, M', T']
        emb = self.embed(h.mean(dim=-1))  # [N, embedding]
        return self.head(self.drop(emb)), emb

    def object_logits(self, emb: torch.Tensor) -> torch.Tensor:
        """Embeddings `[N, embedding]` -> GM-family logits `[N, object_families]`."""
        if not self.has_objects:
            raise ValueError("this classifier has no GM-family head (config.object_families)")
        return self.object_head(self.drop(emb))

    @torch.inference_mode()
    def predict_all(self, segments: torch.Tensor, rate: int, batch: int = 64
                    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Mono segments `[N, L]` -> (class probabilities `[N, classes]`, GM-family
        probabilities `[N, object_families]` or None without the head, embeddings `[N, D]`)."""
        self.eval()
        probs = [torch.zeros(0, len(self.config.classes))]
        objects = [torch.zeros(0, len(self.config.object_families))]
        embs = [torch.zeros(0, self.config.embedding)]
        device = next(self.parameters()).device
        for first in range(0, segments.shape[0], batch):
            feats = self.features(segments[first: first + batch], rate).to(device)
            logits, emb = self(feats)
            probs.append(logits.softmax(dim=-1).cpu())
            if self.has_objects:
                objects.append(self.object_logits(emb).softmax(dim=-1).cpu())
            embs.append(emb.cpu())
        return torch.cat(probs), torch.cat(objects) if self.has_objects else None, torch.cat(embs)

    def predict(self, segments: torch.Tensor, rate: int,
                batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
        """Mono segments `[N, L]` -> (class probabilities `[N, classes]`, embeddings `[N, D]`)."""
        probs, _, embs = self.predict_all(segments, rate, batch)
        return probs, embs

    def save(self, directory: str | os.PathLike) -> None:
        save_pretrained(directory, self.state_dict(), {"type": "instrument-classifier",
                                                       **asdict(self.config)})


def load_classifier(directory: str | os.PathLike | None = None) -> InstrumentClassifier:
    """The classifier in `directory`, or the bundled one; one-line UserError when absent."""
    path = directory if directory is not None else bundled(ASSET)
    if path is None:
        raise UserError(f"no instrument classifier in stemcodec/assets/{ASSET}; {TRAIN_HINT}")
    state, cfg = load_pretrained(path)
    if cfg.pop("type", None) != "instrument-classifier":
        raise UserError(f"{path} is a checkpoint, but not of an instrument classifier")
    known = ClassifierConfig.__dataclass_fields__
    model = InstrumentClassifier(ClassifierConfig(**{k: v for k, v in cfg.items() if k in known}))
    model.load_state_dict(state)
    return model.eval()
