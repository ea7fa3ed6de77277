"""Pictures people would rather look at than read: stems as spectrogram lanes, test tones as
their spectra through each codec, and stems through each codec on a note axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
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
    return _save(fig, path, title)


def tone_spectra_picture(tones: dict[str, dict[str, torch.Tensor]], rate: int, path: Path,
                         peaks: dict[str, dict[str, float]] | None = None,
                         title: str | None = None) -> Path:
    """One panel per test tone ("sine 55", ...; rows by kind): the long-term magnitude spectrum
    of each version (`tones["original"]["sine 55"]`, `tones["codec"][...]`, ...) from half the
    pitch to 16 times it on a log axis, the pitch marked; a panel's title gives each coder's
    strongest peak (`peaks[coder][tone]`), so a tone that came back an octave up, or buzzing,
    is seen at once. Written atomically."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker
    from scipy.signal import welch
    names = list(next(iter(tones.values())))
    kinds = list(dict.fromkeys(name.split()[0] for name in names))
    columns = max(sum(n.split()[0] == k for n in names) for k in kinds)
    fig, axes = plt.subplots(len(kinds), columns, figsize=(2.2 * columns, 2.3 * len(kinds)),
                             squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for row, kind in enumerate(kinds):
        for col, name in enumerate(n for n in names if n.split()[0] == kind):
            ax, pitch = axes[row, col], float(name.split()[1])
            ax.set_visible(True)
            # the original drawn last, on top: where a coder's line leaves it is what changed
            for coder in [c for c in tones if c != "original"] + ["original"]:
                x = tones[coder][name].double().mean(0).numpy()
                # Welch: 8192-sample Hann windows averaged (2.9 Hz apart at 24 kHz), smooth
                # enough to read, fine enough to part a 55 Hz fundamental from its octave
                freqs, power = welch(x, rate, nperseg=min(8192, x.size))
                keep = (freqs >= pitch / 2) & (freqs <= min(16 * pitch, rate / 2))
                db = 10 * np.log10(power[keep] / max(power.max(), 1e-24) + 1e-9)
                style = {"color": "k", "lw": 0.8, "alpha": 0.7} if coder == "original" else \
                    {"lw": 0.8}
                ax.plot(freqs[keep], db, label=coder, **style)
            ax.axvline(pitch, color="k", lw=0.5, ls=":")
            ax.set_xscale("log")
            ax.set_ylim(-90, 3)
            heard = ", ".join(f"{c} {p[name]:.0f}" for c, p in (peaks or {}).items() if name in p)
            ax.set_title(f"{name} Hz" + (f"\n{heard}" if heard else ""), fontsize=7)
            ax.tick_params(labelsize=6)
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    axes[0, 0].legend(fontsize=6, loc="lower left")
    axes[0, 0].set_ylabel("dB (peak 0)", fontsize=7)
    return _save(fig, path, title)


def note_lanes_picture(lanes: dict[str, torch.Tensor], rate: int, path: Path,
                       title: str | None = None) -> Path:
    """One constant-Q lane per entry `[C, S]` (36 bins per octave from C1 over 7 octaves, the
    axis in notes): a melody, a bass line, a note out of tune or missing, read as on a piano
    roll, where a linear spectrogram squeezes the bass into its lowest pixels. Lanes keep the
    order given ("bass original", "bass codec", ...); each lane's colours run 70 dB down from
    its own peak. Written atomically."""
    import librosa
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fmin, per_octave, octaves, hop = 32.70, 36, 7, 256
    fig, axes = plt.subplots(len(lanes), 1, figsize=(10, 1.3 * len(lanes) + 0.5), sharex=True,
                             squeeze=False)
    notes = [f"C{o}" for o in range(1, octaves + 2)]
    for ax, (name, wav) in zip(axes[:, 0], lanes.items()):
        mono = wav.double().mean(0).numpy()
        spec = np.abs(librosa.cqt(mono, sr=rate, hop_length=hop, fmin=fmin,
                                  n_bins=per_octave * octaves, bins_per_octave=per_octave))
        db = 20 * np.log10(np.maximum(spec, 1e-6))
        ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=float(db.max()) - 70,
                  vmax=float(db.max()), extent=[0, mono.size / rate, 0, octaves])
        ax.set_yticks(range(octaves + 1), notes, fontsize=6)
        ax.set_ylabel(name, fontsize=7)
    axes[-1, 0].set_xlabel("seconds")
    return _save(fig, path, title, palette=True)


def _save(fig, path: Path, title: str | None, palette: bool = False) -> Path:
    """Title, lay out and write `fig` as PNG under a temporary name, then rename: a reader
    never sees half a picture. `palette`: 256 colours (a lane of spectrogram noise is a third
    of the bytes, and looks the same)."""
    import matplotlib.pyplot as plt
    if title:
        fig.suptitle(title, fontsize=9)
    # leave the title its own strip, above the first panel
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.3 / fig.get_figheight()) if title else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=80)
    plt.close(fig)
    if palette:
        from PIL import Image
        with Image.open(tmp) as image:
            quantized = image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT)
        quantized.save(tmp, optimize=True)
    tmp.replace(path)
    return path
