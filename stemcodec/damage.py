"""What the decoders say about a damaged audio file: missing stretches and cut-off ends.

libsndfile alone hides damage: it skips an Ogg page that fails its checksum and returns the
file that much shorter, reads a cut-off WAV, FLAC or MP3 up to where the bytes end, and an
Ogg stream cut before its last page simply looks shorter. So a decoded file is checked
against what the file itself declares:

  * the frames its header declares (libsndfile's count; an MP3 has an exact one only with a
    Xing, Info or VBRI header, else an estimate from its first frame's bitrate);
  * the timestamps of its packets (ffprobe, from ffmpeg, when installed): a jump between two
    packets is a stretch the demuxer could not read, and where it is;
  * a WAV's `data` chunk size against the bytes present; an Ogg stream's end-of-stream flag.

Nothing here guesses from the samples. `audio.read_file` applies the verdict.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from .errors import AudioError

# Lengths that agree within this are the same: an MP3 frame is 26 ms and encoder delay plus
# padding add up to about 50 ms; real damage loses whole pages or frames, far more.
TOLERANCE_S = 0.1
MIN_GAP_S = 0.001  # consecutive packets of an undamaged file meet exactly
PCM_FORMATS = {"WAV", "WAVEX", "AIFF", "AIFC", "RF64", "W64", "CAF", "AU", "RAW"}


@dataclass
class Packets:
    """The audio packets of a file as ffprobe's demuxer reads them, in seconds."""

    start: float
    end: float
    gaps: list[tuple[float, float]] = field(default_factory=list)  # (at, seconds missing)
    errors: list[str] = field(default_factory=list)  # what the demuxer complained of


@dataclass
class Verdict:
    """How to mend what was decoded: silence to insert, and the lines to tell the user."""

    fill: list[tuple[int, int]] = field(default_factory=list)  # (at frame, frames of silence)
    warnings: list[str] = field(default_factory=list)


def check_decoded(path: Path, fmt: str, rate: int, declared: int, decoded: int) -> Verdict:
    """Compare `decoded` frames with what the file declares. Raises AudioError for a file
    that ends before its declared end (cut off); returns the holes to fill otherwise."""
    if fmt in ("WAV", "WAVEX") and (missing := wav_missing_bytes(path)) > 0:
        raise AudioError(f"truncated: {missing} bytes of samples missing after the header")
    if fmt == "OGG" and ogg_stream_ended(path) is False:
        raise AudioError(f"truncated: the Ogg stream stops at {decoded / rate:.1f} s "
                         "without its last page")
    # an MP3 without a Xing/Info/VBRI header has only a length guessed from a bitrate
    trusted = fmt != "MP3" or mp3_length_header(path)
    packets = probe_packets(path) if fmt not in PCM_FORMATS else None
    if packets is None:
        if not trusted:
            return Verdict()  # nothing to compare with: that check needs ffprobe
        return _without_packets(rate, declared, decoded, fmt in PCM_FORMATS)
    if trusted and packets.end < declared / rate - TOLERANCE_S:  # the header's length is exact
        # (an MP3's frames carry no time: a hole in one reads as a shorter file)
        raise AudioError(f"truncated or damaged: {packets.end:.1f} s of the "
                         f"{declared / rate:.1f} s its header declares are there")
    lost = sum(g for _, g in packets.gaps)
    # a decoder also drops the packet before each hole (at most 2048 frames)
    allowance = TOLERANCE_S * (1 + len(packets.gaps))
    if decoded / rate < packets.end - packets.start - lost - allowance:
        raise AudioError(f"libsndfile decodes only {decoded / rate:.1f} s of the "
                         f"{packets.end - packets.start:.1f} s of audio in the file; convert it "
                         "(e.g. ffmpeg -i IN OUT.flac) and prepare that")
    if not packets.gaps:
        return Verdict()
    if trusted and decoded >= declared and not packets.errors:
        # all that was declared decoded and the demuxer saw nothing wrong: ffmpeg's Vorbis
        # packet durations are short at a long-to-short block change (10 ms at 44.1 kHz),
        # which reads as a gap in a file that lost nothing
        return Verdict()
    # libsndfile's shortfall goes where ffprobe found the holes, shared by their sizes, so
    # what follows a hole keeps its time (and a stem stays aligned with the others)
    shortfall = max(declared - decoded, 0) if trusted else 0
    fill = []
    shift = 0  # frames lost before this hole: where it is in what was decoded
    for at, seconds in packets.gaps:
        if frames := round(shortfall * seconds / lost):
            fill.append((max(round(at * rate) - shift, 0), frames))
            shift += frames
    return Verdict(fill, [_holes(packets.gaps, bool(fill), packets.errors)])


def _holes(gaps: list[tuple[float, float]], filled: bool, errors: list[str]) -> str:
    """One line for all of a file's holes: `1.3 s unreadable at 3.4 s, filled with silence
    (CRC mismatch!)`, or their total, count and the first few."""
    if len(gaps) == 1:
        text = f"{gaps[0][1]:.1f} s unreadable at {gaps[0][0]:.1f} s"
    else:
        where = ", ".join(f"{at:.1f} s ({n:.1f} s)" for at, n in gaps[:3])
        text = (f"{sum(n for _, n in gaps):.1f} s unreadable in {len(gaps)} stretches, at "
                f"{where}" + (", ..." if len(gaps) > 3 else ""))
    return (text + (", filled with silence" if filled else "")
            + (f" ({errors[0]})" if errors else ""))


def _without_packets(rate: int, declared: int, decoded: int, pcm: bool) -> Verdict:
    missing = (declared - decoded) / rate
    if missing < TOLERANCE_S:
        return Verdict()
    where = "" if pcm else "; ffprobe (Debian package ffmpeg) would tell where"
    return Verdict(warnings=[f"{missing:.1f} s of the {declared / rate:.1f} s its header "
                             f"declares could not be decoded{where}"])


def probe_packets(path: Path) -> Packets | None:
    """The first audio stream's packets by ffprobe; None without ffprobe or when it fails."""
    exe = shutil.which("ffprobe")
    if exe is None:
        return None
    # the file as bytes (any name the file system allows) and absolute (never an option)
    target = os.fsencode(os.path.abspath(path))
    cmd = [exe, "-v", "error", "-select_streams", "a:0", "-show_entries",
           "stream=time_base:packet=pts,duration", "-of", "csv", target]
    with tempfile.TemporaryFile() as err:
        # packets are read as they come: a long file has hundreds of thousands
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        first = end = None
        gaps: list[tuple[int, int]] = []
        base = None
        for raw in proc.stdout:
            fields = raw.decode("ascii", "replace").strip().split(",")
            if fields[0] == "stream" and len(fields) >= 2:
                base = fields[1]
            elif fields[0] == "packet" and len(fields) >= 3 and fields[1].lstrip("-").isdigit():
                pts = int(fields[1])
                length = int(fields[2]) if fields[2].isdigit() else 0
                if end is not None and pts > end:
                    gaps.append((end, pts - end))
                first = pts if first is None else first
                end = max(pts + length, end if end is not None else pts)
        if proc.wait() != 0 or first is None or base is None:
            return None
        err.seek(0)
        errors = _distinct(err.read().decode("utf-8", "replace"))
    try:
        tick = Fraction(base)
    except (ValueError, ZeroDivisionError):
        return None
    seconds = [(float(at * tick), float(n * tick)) for at, n in gaps]
    return Packets(
        start=float(max(first, 0) * tick),
        end=float(end * tick),
        gaps=[(at, n) for at, n in seconds if n >= MIN_GAP_S],
        errors=errors,
    )


def _distinct(text: str) -> list[str]:
    """ffmpeg's messages without its `[ogg @ 0x...]` prefixes and repeats."""
    seen: list[str] = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("[") and "] " in line:
            line = line.split("] ", 1)[1]
        if line and not line.startswith("Last message repeated") and line not in seen:
            seen.append(line)
    return seen[:3]


def wav_missing_bytes(path: Path) -> int:
    """Bytes the RIFF `data` chunk declares beyond the end of the file (0 if complete).

    libsndfile quietly reads what is there, so a cut-off download would pass unnoticed.
    """
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
            return 0
        order = "little" if head[:4] == b"RIFF" else "big"
        pos = 12
        while pos + 8 <= size:
            handle.seek(pos)
            chunk = handle.read(8)
            length = int.from_bytes(chunk[4:8], order)
            if chunk[:4] == b"data":
                if length in (0, 0xFFFFFFFF):  # streaming writers leave the size open
                    return 0
                return max(0, pos + 8 + length - size)
            pos += 8 + length + (length & 1)
    return 0


def mp3_length_header(path: Path) -> bool:
    """Whether an MP3's first frame is a Xing, Info or VBRI header, which states the number
    of frames; after an ID3v2 tag (cover art can make it large) when there is one."""
    with open(path, "rb") as handle:
        head = handle.read(10)
        start = 0
        if len(head) == 10 and head[:3] == b"ID3":
            size = int.from_bytes(bytes(b & 0x7F for b in head[6:10]), "big")  # syncsafe
            start = 10 + size + (10 if head[5] & 0x10 else 0)  # the footer flag
        handle.seek(start)
        data = handle.read(8192)
    for pos in range(len(data) - 1):
        if data[pos] == 0xFF and data[pos + 1] & 0xE0 == 0xE0:  # the first frame's sync
            frame = data[pos:pos + 200]
            return any(tag in frame for tag in (b"Xing", b"Info", b"VBRI"))
    return False


OGG_PAGE_MAX = 27 + 255 + 255 * 255  # header, segment table, 255 segments of 255 bytes


def ogg_stream_ended(path: Path) -> bool | None:
    """Whether the last Ogg page carries the end-of-stream flag (None: not an Ogg file).

    An Ogg file's length is its last page's granule position, so a file cut between pages
    decodes without a complaint; only the missing end-of-stream page tells."""
    size = path.stat().st_size
    with open(path, "rb") as handle:
        if handle.read(4) != b"OggS":
            return None
        handle.seek(max(0, size - OGG_PAGE_MAX - 4))
        tail = handle.read()
    last = tail.rfind(b"OggS")
    if last < 0 or last + 5 >= len(tail):
        return False
    return bool(tail[last + 5] & 0x04)
