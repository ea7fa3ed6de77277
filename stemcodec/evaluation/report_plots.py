"""The report's two figures, from the scored pieces of each set (stemcodec.evaluation.report):
per-slot timbre stability distributions, and the share of stems changing instrument label at
each second (for long generations: does identity drift?). Both written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _column(piece: dict, column: str) -> dict | None:
    """A piece's figures for a plot column: a slot's stem, or "mix"."""
    return piece.get("mix") if column == "mix" else piece["stems"].get(column)


def plot_stability(sets: dict[str, dict[str, dict]], path: Path) -> None:
    """Box plots of the stems' stability per slot (and of the mixes), one colour per set."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    slots = sorted({s for pieces in sets.values() for p in pieces.values() for s in p["stems"]})
    columns = slots + ["mix"]  # the mixes last: the only column a mix-only set fills
    fig, ax = plt.subplots(figsize=(min(14, max(6, 0.8 * len(columns) * max(1, len(sets)))), 4))
    width = 0.8 / max(1, len(sets))
    for i, (name, pieces) in enumerate(sets.items()):
        data = [[f["timbre_stability"] for p in pieces.values()
                 if (f := _column(p, c)) is not None and f["timbre_stability"] is not None]
                for c in columns]
        pos = [j + (i - (len(sets) - 1) / 2) * width for j in range(len(columns))]
        keep = [(d, x) for d, x in zip(data, pos) if d]
        if keep:
            box = ax.boxplot([d for d, _ in keep], positions=[x for _, x in keep],
                             widths=width * 0.9, patch_artist=True, manage_ticks=False)
            for patch in box["boxes"]:
                patch.set_facecolor(f"C{i}")
        ax.plot([], [], color=f"C{i}", lw=6, label=name)
    ax.set_xticks(range(len(columns)), columns)
    ax.set_ylabel("timbre stability")
    ax.legend(fontsize=8)
    ax.set_title("Timbre stability per slot (higher: the stem keeps its instrument)")
    save(fig, path)


def plot_switches(sets: dict[str, dict[str, dict]], path: Path) -> None:
    """Per second, the share of a set's stems (of its mixes, for a mix-only set) whose
    instrument label changes from the second before."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 3.5))
    curves = [(i, name, pieces, any(p["stems"] for p in pieces.values()))
              for i, (name, pieces) in enumerate(sets.items())]
    if len(curves) > 1 and curves[0][3] and not all(c[3] for c in curves):
        # mix-only sets (dashed) are drawn beside the reference's mixes
        curves.insert(1, (0, curves[0][1], curves[0][2], False))
    for i, name, pieces, has_stems in curves:
        counts: dict[int, list[int]] = {}
        for piece in pieces.values():
            tracks = piece["stems"].values() if has_stems else [piece["mix"]]
            for stem in tracks:
                for second, changed in (stem or {}).get("switches", []):
                    counts.setdefault(second, []).append(int(changed))
        if counts:
            xs = sorted(counts)
            ax.plot([x + 1 for x in xs], [np.mean(counts[x]) for x in xs], color=f"C{i}",
                    label=name if has_stems else f"{name} (mixes)", marker=".",
                    linestyle="-" if has_stems else "--")
    ax.set_xlabel("second")
    ax.set_ylabel("share of stems switching label")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.set_title("Instrument label changes over time")
    save(fig, path)


def save(fig, path: Path) -> None:
    """`fig` to `path`, renamed into place when whole."""
    import matplotlib.pyplot as plt
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.tight_layout()
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
