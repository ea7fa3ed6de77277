"""Pictures people would rather look at than read: stems as spectrogram lanes."""

from __future__ import annotations

from pathlib import Path

import torch


def stems_picture(stems: dict[str, torch.Tensor], rate: int, path: Path,
                  title: str | None = None, labels: dict[str, str] | None = None) -> Path:
    """One log-spectrogram lane per stem `[C, S]`, labelled with its name (or its entry in
    `labels`: "guitar: nylon guitar"); written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(stems), 1, figsize=(10, 1.6 * len(stems) + 0.4), sharex=True,
                             squeeze=False)
    for ax, (name, wav) in zip(axes[:, 0], stems.items()):
        mono = wav.float().mean(0)
        if mono.numel() < 1024:  # stft needs one window; a lane stays even for a blip
            mono = torch.nn.functional.pad(mono, (0, 1024 - mono.numel()))
        spec = torch.stft(mono, 1024, 256, window=torch.hann_window(1024),
                          return_complex=True).abs()
        db = 20 * torch.log10(spec.clamp_min(1e-5))
        ax.imshow(db.numpy(), origin="lower", aspect="auto", cmap="magma",
                  extent=[0, wav.shape[-1] / rate, 0, rate / 2000], vmin=float(db.max()) - 80)
        ax.set_ylabel(f"{(labels or {}).get(name, name)}\nkHz")
    axes[-1, 0].set_xlabel("seconds")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    tmp.replace(path)
    return path
