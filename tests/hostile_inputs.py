"""A folder of hostile inputs for prepare, and what prepare must say of each.

`make_hostile_songs(root)` writes the files and returns one `Expect` per file that must get
exactly one line (`skipped <path>: ...` or `warning <path>: ...`), and the names of the
songs that must come out whole. Add a case here when a new kind of bad file turns up: every
test over this folder checks it.

Cases: files cut off (FLAC, MP3, Ogg); garbage over the middle of an MP3 and of an Ogg
Vorbis file; a zero-length file, an image and random bytes named as audio; names that are
not UTF-8 or hold a newline; a folder linked into itself, a link to itself, a broken link,
a file and a folder also reached through a link, a hard link; a FIFO named .wav; a stereo
file with a dead channel, one with a DC offset, a silent file; a file of one sample and one
just over a codec frame; with ffmpeg installed, an MP3 without a length header.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

RATE = 24000


@dataclass
class Expect:
    """The one line a file must get: `kind` (skipped | warning) and words it must hold;
    `flag` is what its song's manifest entry must carry (warnings only)."""

    kind: str
    words: list[str]
    flag: str | None = None


@dataclass
class Hostile:
    lines: dict[Path, Expect] = field(default_factory=dict)  # file -> its one line
    songs: set[str] = field(default_factory=set)  # manifest sources of songs that must be in
    flags: dict[str, set[str]] = field(default_factory=dict)  # source -> flags it must carry


def tone(seconds: float, freq: float = 220.0, channels: int = 1, seed: int = 0) -> np.ndarray:
    """A tone with a little noise, `[S, C]` float32 (noise: an encoder cannot make it tiny)."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * freq * t) + 0.05 * rng.standard_normal(len(t))
    return np.repeat(x[:, None], channels, axis=1).astype(np.float32)


def garbage_over_middle(path: Path, size: int = 20_000) -> None:
    """Overwrite `size` bytes in the middle with random ones, as a bad sector or a broken
    download does: the Ogg pages there fail their checksum."""
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + size] = np.random.default_rng(1).bytes(size)
    path.write_bytes(bytes(data))


def cut_in_half(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def make_hostile_songs(root: Path, ffprobe: bool | None = None) -> Hostile:
    """Write the folder. `ffprobe`: whether prepare will find ffprobe (default: whether it
    is installed); without it, damage is told but not located, and a cut MP3 is kept."""
    ffprobe = shutil.which("ffprobe") is not None if ffprobe is None else ffprobe
    root.mkdir(parents=True, exist_ok=True)
    out = Hostile()

    def song(rel: str, data: np.ndarray, flag: str | None = None, words=(), **kw) -> Path:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, data, RATE, **kw)
        out.songs.add(rel)
        if flag is not None:
            out.lines[path] = Expect("warning", list(words), flag)
            out.flags.setdefault(rel, set()).add(flag)
        return path

    def skipped(path: Path, *words: str) -> None:
        out.lines[path] = Expect("skipped", list(words))

    # -- damaged files -------------------------------------------------------------------
    located = ["s unreadable at", "filled with silence"]
    unlocated = ["could not be decoded", "ffprobe"]
    (root / "damaged").mkdir()
    for ext in ("flac", "mp3", "ogg"):
        rel = f"damaged/cut.{ext}"
        if ext == "mp3" and not ffprobe:  # its length is known, not where the bytes stop
            song(rel, tone(4.0), "unreadable", unlocated)
        else:
            sf.write(root / rel, tone(4.0), RATE)
            skipped(root / rel, "truncated")
        cut_in_half(root / rel)
    # garbage in an MP3: libmpg123 gives up, and prints notes of its own past Python
    sf.write(root / "damaged" / "garbage.mp3", tone(4.0), RATE)
    garbage_over_middle(root / "damaged" / "garbage.mp3", 3_000)
    skipped(root / "damaged" / "garbage.mp3", "decoding fails at", "resync")
    # 6 kB over the middle of 8 s of Ogg Vorbis (48 kbit/s): about a second of it is lost
    noisy = song("damaged/garbage.ogg", tone(8.0, seed=3), "unreadable",
                 located if ffprobe else unlocated)
    garbage_over_middle(noisy, 6_000)
    # -- not audio -----------------------------------------------------------------------
    (root / "junk").mkdir()
    (root / "junk" / "empty.ogg").write_bytes(b"")
    skipped(root / "junk" / "empty.ogg", "empty file")
    (root / "junk" / "photo.mp3").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    skipped(root / "junk" / "photo.mp3", "not readable as audio")
    (root / "junk" / "random.flac").write_bytes(np.random.default_rng(2).bytes(30_000))
    skipped(root / "junk" / "random.flac", "not readable as audio")
    fifo = root / "junk" / "pipe.wav"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    skipped(fifo, "not a regular file")
    # -- names ---------------------------------------------------------------------------
    names = root / "names"
    names.mkdir()
    latin1 = os.fsdecode(os.fsencode(names) + b"/caf\xe9.wav")  # Latin-1, not UTF-8
    sf.write(os.fsencode(latin1), tone(0.5), RATE)
    out.songs.add(os.fsdecode(b"names/caf\xe9.wav"))
    broken_name = Path(os.fsdecode(os.fsencode(names) + b"/d\xe9j\xe0.wav"))
    broken_name.write_bytes(b"")
    skipped(broken_name, "empty file")
    song("names/two\nlines.wav", tone(0.5))
    # -- links ---------------------------------------------------------------------------
    album = root / "album"
    song("album/track.wav", tone(0.5, freq=330))
    (album / "again").symlink_to(".", target_is_directory=True)  # the folder, inside itself
    skipped(album / "again", "symlink loop")
    (root / "album-link").symlink_to("album", target_is_directory=True)
    skipped(root / "album-link", "same folder as")
    (root / "copy.wav").symlink_to("album/track.wav")
    skipped(root / "copy.wav", "same file as")
    os.link(album / "track.wav", root / "hard.wav")
    skipped(root / "hard.wav", "same file as", "hard link")
    (root / "self.wav").symlink_to("self.wav")
    skipped(root / "self.wav", "symlink loop")
    (root / "gone.ogg").symlink_to("nowhere/gone.ogg")
    skipped(root / "gone.ogg", "broken symlink", "nowhere/gone.ogg")
    # -- odd levels ----------------------------------------------------------------------
    stereo = tone(1.0, channels=2)
    stereo[:, 1] = 0.0
    song("levels/dead_right.wav", stereo, "dead_channel", ["right channel dead"])
    song("levels/dc.wav", tone(1.0) + 0.1, "dc_offset", ["DC offset +0.1"])
    song("levels/silent.wav", np.zeros((RATE, 1), np.float32), "silent", ["silent"])
    # -- lengths -------------------------------------------------------------------------
    skipped(root / "lengths" / "one_sample.wav", "too short")
    (root / "lengths").mkdir()
    sf.write(root / "lengths" / "one_sample.wav", np.full((1, 1), 0.1, np.float32), RATE)
    song("lengths/short.wav", tone(0.02))  # 480 samples: one and a half codec frames
    # -- an MP3 without a length header: libsndfile stops at its estimate ------------------
    if shutil.which("ffmpeg") and ffprobe:
        source = root / "lengths" / ".source.wav"
        sf.write(source, loud_then_quiet(), RATE)
        path = root / "lengths" / "no_header.mp3"
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-i", str(source), "-c:a",
                        "libmp3lame", "-q:a", "4", "-write_xing", "0", str(path)], check=True)
        source.unlink()
        skipped(path, "libsndfile decodes only")
    return out


def loud_then_quiet() -> np.ndarray:
    """Noise, then a quiet tone: VBR frames shrink, so a length estimated from the first
    frame's bitrate comes out far too short (about 3 s of 8)."""
    noise = 0.5 * np.random.default_rng(4).standard_normal((RATE * 2, 1))
    return np.concatenate([noise.astype(np.float32), 0.2 * tone(6.0, freq=440)])
