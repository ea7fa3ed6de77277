"""Decoding a file block by block, so that no file is ever held whole in memory.

`scan(path)` decodes the file once without keeping it: it counts the frames, refuses what
cannot be used (empty, not audio, NaN samples, cut off) and asks stemcodec.damage where the
decoders lost audio. `read_blocks(found)` then decodes it again, block by block, with those
holes filled with silence. Both read as libsndfile does, except where libsndfile 1.2.2
decodes wrongly in blocks (measured on this machine, see the constants below).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from .damage import check_decoded
from .errors import AudioError

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".aif", ".opus")

# Frames per libsndfile read. Ogg: past a lost page, libsndfile 1.2.2 asked for 1023 frames or
# more at once pads the end of the file with made-up frames (768 and fewer match one read of
# the whole file, on every damaged file tried).
OGG_READ = 512
READ = 4096  # WAV, FLAC, AIFF: any size decodes the same (and FLAC fails on reads > 2**24 samples)
# MP3: any read after the first can resume wrongly (libmpg123 `part2_3_length too large`,
# samples off by 0.3 against one whole read or ffmpeg), whatever the block size; so an MP3 is
# decoded in one read up to this many bytes of samples (11 min of 48 kHz stereo), by ffmpeg's
# pipe beyond, and whole anyway when ffmpeg is not installed.
MP3_WHOLE_BYTES = 256 << 20


def is_audio_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in AUDIO_EXTENSIONS


@dataclass
class Found:
    """What `scan` learned of a file: its format, rate and channels, the frames decoded, where
    silence goes (stemcodec.damage), and the lines the user should read."""

    path: Path
    format: str
    rate: int
    channels: int
    declared: int  # frames the file says it has
    decoded: int  # frames the decoder gave
    fill: list[tuple[int, int]] = field(default_factory=list)  # (at decoded frame, frames)
    warnings: list[str] = field(default_factory=list)
    kept: list[np.ndarray] | None = None  # the decoded blocks, when scan was asked to keep them
    pipe: bool = False  # decoded by ffmpeg (a long MP3)

    @property
    def frames(self) -> int:
        """Frames once the holes are filled: what read_blocks gives."""
        return self.decoded + sum(n for _, n in self.fill)

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def scan(path: str | os.PathLike, keep: bool = False) -> Found:
    """Decode `path` once, checked (AudioError with a short reason when it cannot be used).
    `keep`: hold the decoded blocks, for a caller that wants the whole file anyway."""
    path = Path(path)
    if not is_audio_path(path):
        raise AudioError(f"unsupported extension '{path.suffix or '(none)'}' "
                         f"(expected one of {', '.join(AUDIO_EXTENSIONS)})")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise AudioError(f"cannot read file ({exc.strerror})") from None
    if size == 0:
        raise AudioError("empty file (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioError("permission denied")
    # bytes: a name that is not UTF-8 reaches libsndfile as the bytes it has on disk
    name = os.fsencode(path)
    try:
        with decoder_notes() as notes:
            info = sf.info(name)
    except PermissionError:
        raise AudioError("permission denied") from None
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        raise AudioError(f"not readable as audio ({_reason(exc, notes)})") from None
    found = Found(path, info.format, int(info.samplerate), int(info.channels), int(info.frames),
                  0, kept=[] if keep else None, pipe=_piped(info))
    done = 0
    try:
        with decoder_notes() as notes:
            for block in _decode(name, found):
                if not np.isfinite(block).all():
                    raise AudioError("contains NaN or infinite samples")
                done += len(block)
                if found.kept is not None:
                    found.kept.append(block)
    except PermissionError:
        raise AudioError("permission denied") from None
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
        reason = _reason(exc, notes)
        if info.format == "MP3" and not found.pipe:  # one read: where it fails is unknown
            raise AudioError(_failure(name, reason)) from None
        raise AudioError(_where(done, found, reason)) from None
    if done == 0:
        raise AudioError("no samples (header only or truncated)")
    found.decoded = done
    verdict = check_decoded(path, info.format, found.rate, found.declared, done)
    found.fill, found.warnings = verdict.fill, verdict.warnings
    return found


def read_blocks(found: Found, frames: int = 1 << 16) -> Iterator[np.ndarray]:
    """The file as `scan` found it, in float32 blocks `[n, C]` of at most `frames` (holes
    filled with silence in their place). AudioError if it decodes differently this time."""
    source = iter(found.kept) if found.kept is not None else _quiet(
        _decode(os.fsencode(found.path), found))
    fill = [(min(at, found.decoded), n) for at, n in found.fill]
    pending = np.zeros((0, found.channels), np.float32)
    done = 0  # decoded frames handed on
    ended = False
    while True:
        if ended and (not fill or fill[0][0] > done):
            break
        if fill and fill[0][0] <= done:  # a hole starts here
            silence = fill.pop(0)[1]
            while silence > 0:
                yield np.zeros((min(silence, frames), found.channels), np.float32)
                silence -= frames
            continue
        if not len(pending):
            try:
                pending = next(source)
            except StopIteration:
                ended = True
                continue
            except (sf.LibsndfileError, RuntimeError, ValueError, OSError) as exc:
                raise AudioError(f"decoding failed on a second read ({short(exc)})") from None
        take = min(len(pending), frames, (fill[0][0] - done) if fill else len(pending))
        yield pending[:take]
        pending, done = pending[take:], done + take
    if done != found.decoded:
        raise AudioError(f"decodes to {done} frames, {found.decoded} a moment ago "
                         "(the file changed while it was read)")


def _piped(info) -> bool:
    """Whether an MP3 goes through ffmpeg: too long to decode in one read (see MP3_WHOLE_BYTES)."""
    return (info.format == "MP3" and info.frames * info.channels * 4 > MP3_WHOLE_BYTES
            and shutil.which("ffmpeg") is not None)


def _decode(name: bytes, found: Found) -> Iterator[np.ndarray]:
    """float32 blocks `[n, C]` straight from the decoder."""
    if found.pipe:
        yield from _ffmpeg(name, found.channels)
        return
    if found.format == "MP3":
        yield sf.read(name, dtype="float32", always_2d=True)[0]
        return
    size = OGG_READ if found.format == "OGG" else READ
    with sf.SoundFile(name) as handle:
        while len(block := handle.read(size, dtype="float32", always_2d=True)):
            yield block


def _ffmpeg(name: bytes, channels: int, frames: int = 1 << 16) -> Iterator[np.ndarray]:
    """An MP3 decoded by ffmpeg into a pipe, at its own rate, `channels` as libsndfile says."""
    target = os.fsencode(os.path.abspath(name))  # absolute: never taken for an option
    cmd = [shutil.which("ffmpeg") or "ffmpeg", "-v", "error", "-nostdin", "-i", target,
           "-map", "0:a:0", "-ac", str(channels), "-f", "f32le", "-c:a", "pcm_f32le", "-"]
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        assert proc.stdout is not None
        step = frames * channels * 4
        try:
            while raw := proc.stdout.read(step):
                usable = len(raw) - len(raw) % (channels * 4)
                yield np.frombuffer(raw[:usable], np.float32).reshape(-1, channels)
        finally:
            proc.stdout.close()
            code = proc.wait()
        if code != 0:
            err.seek(0)
            text = err.read().decode("utf-8", "replace").strip().splitlines()
            raise RuntimeError(f"ffmpeg: {text[-1] if text else f'exit status {code}'}")


def _quiet(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    """`blocks` with what the decoders print to descriptor 2 while each is decoded caught, so
    a run prints one line per file (as `decoder_notes`, but for a long read interleaved with
    other work: only the decoding itself is caught)."""
    with tempfile.TemporaryFile() as caught:
        while True:
            if sys.stderr is not None:
                sys.stderr.flush()
            saved = _redirect(caught.fileno())
            try:
                block = next(blocks)
            except StopIteration:
                return
            finally:
                _restore(saved)
                caught.seek(0)
                caught.truncate()
            yield block


def _redirect(fd: int) -> int | None:
    try:
        saved = os.dup(2)
    except OSError:  # no descriptor 2 (a daemon): nothing would be printed anyway
        return None
    os.dup2(fd, 2)
    return saved


def _restore(saved: int | None) -> None:
    if saved is not None:
        os.dup2(saved, 2)
        os.close(saved)


@contextlib.contextmanager
def decoder_notes() -> Iterator[list[str]]:
    """Catch what the decoders under libsndfile write straight to file descriptor 2, past
    Python (libmpg123's `Note: Trying to resync...`): a run prints one line per file, and a
    failure can name the decoder's own reason. Yields the lines, filled on exit."""
    notes: list[str] = []
    if sys.stderr is not None:
        sys.stderr.flush()
    with tempfile.TemporaryFile() as caught:
        saved = _redirect(caught.fileno())
        try:
            yield notes
        finally:
            _restore(saved)
            caught.seek(0)
            notes += caught.read().decode("utf-8", "replace").splitlines()


def _reason(exc: Exception, notes: list[str]) -> str:
    """The decoder's own error when it printed one, else libsndfile's, without the
    `Error opening b'...': ` that repeats the name."""
    for line in reversed(notes):
        if "error: " in line:
            return line.split("error: ", 1)[1].split(" - ")[0].strip()[:100]
    text = getattr(exc, "error_string", None) or short(exc)
    if "does not exist or is not a regular file" in text:
        return "format not recognised"  # what libsndfile says of an MP3 it cannot parse
    text = text.removeprefix("Error : ").strip().rstrip(".")
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def _where(done: int, found: Found, reason: str) -> str:
    if done == 0:
        return f"not readable as audio ({reason})"
    return (f"corrupt or truncated: decoding fails at {done / found.rate:.1f} s of "
            f"{found.declared / found.rate:.1f} s ({reason})")


def _failure(name: bytes, reason: str) -> str:
    """Where an MP3 decoded in one read fails: read again in small blocks up to the failing
    one (what is decoded is thrown away: only how far it gets counts)."""
    try:
        with decoder_notes():
            handle = sf.SoundFile(name)
    except (sf.LibsndfileError, RuntimeError, ValueError, OSError):
        return f"not readable as audio ({reason})"
    with handle, decoder_notes():
        done = 0
        try:
            while len(block := handle.read(1024, dtype="float32")):
                done += len(block)
        except (sf.LibsndfileError, RuntimeError, ValueError, OSError):
            pass
        found = Found(Path(os.fsdecode(name)), "MP3", handle.samplerate, handle.channels,
                      handle.frames, done)
    return _where(done, found, reason)


def short(exc: Exception) -> str:
    """The first line of an exception's text, or its type's name."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:120]
