"""FluidSynth: one slot's tracks -> a MIDI file -> audio, through the `fluidsynth` CLI.

One process per stem: `fluidsynth -ni -q -g 0.5 -C 0 -r RATE -F out.wav SF2 in.mid` with
float output (nothing clips before the piece's gain is set) and dynamic sample loading (only
the presets a stem uses are read from the SoundFont: half the start-up time). Chorus is off,
the SoundFont's default reverb stays on unless `reverb=False`; fluidsynth keeps rendering
until every voice has died away, so each stem carries its natural release tail.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import soundfile as sf

from ..errors import UserError
from .arrangement import ScoreError, Track

SOUNDFONTS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
)
INSTALL_HINT = ("install the Debian packages fluidsynth and fluid-soundfont-gm "
                "(apt-get install fluidsynth fluid-soundfont-gm), or point at another "
                "General MIDI SoundFont with --soundfont PATH")


class SynthError(UserError):
    """No fluidsynth or no SoundFont: the whole run cannot start."""


def find_synth(soundfont: str | None = None) -> Path:
    """Check that fluidsynth runs and return the SoundFont to use (one-line error if not)."""
    if shutil.which("fluidsynth") is None:
        raise SynthError(f"the fluidsynth program is not on PATH: {INSTALL_HINT}")
    if soundfont is not None:
        path = Path(soundfont).expanduser()
        if not path.is_file():
            raise SynthError(f"SoundFont {soundfont} not found: {INSTALL_HINT}")
        return path
    for candidate in SOUNDFONTS:
        if Path(candidate).is_file():
            return Path(candidate)
    raise SynthError(f"no General MIDI SoundFont found: {INSTALL_HINT}")


def write_midi(tracks: list[tuple[Track, int]], tempo: float, path: Path) -> int:
    """Write (track, program) pairs as one MIDI file at `tempo`; returns the notes written.

    Notes shorter than 20 ms are dropped: a note cut to nothing may lose its note-off and
    ring for ever.
    """
    import pretty_midi

    spq = 60.0 / tempo  # seconds per quarter note
    midi = pretty_midi.PrettyMIDI(initial_tempo=tempo)
    count = 0
    for track, program in tracks:
        inst = pretty_midi.Instrument(program=program, is_drum=track.is_drum)
        for start, dur, pitch, velocity in track.notes:
            if dur * spq < 0.02:
                continue
            inst.notes.append(pretty_midi.Note(velocity=int(velocity), pitch=int(pitch),
                                               start=start * spq, end=(start + dur) * spq))
        inst.control_changes = [pretty_midi.ControlChange(int(n), int(v), t * spq)
                                for t, n, v in track.controls]
        inst.pitch_bends = [pretty_midi.PitchBend(int(v), t * spq) for t, v in track.bends]
        if inst.notes:
            midi.instruments.append(inst)
            count += len(inst.notes)
    midi.write(str(path))
    return count


def synthesize(midi_path: Path, wav_path: Path, soundfont: Path, rate: int, channels: int = 1,
               reverb: bool = True, timeout: float = 120.0) -> np.ndarray:
    """Render a MIDI file; returns float32 samples `[channels, S]` (1: mean of L and R).

    A time limit turns a stuck note (fluidsynth would render for ever) into a ScoreError.
    """
    cmd = ["fluidsynth", "-ni", "-q", "-g", "0.5", "-C", "0", "-R", "1" if reverb else "0",
           "-r", str(rate), "-o", "synth.dynamic-sample-loading=1",
           "-o", "audio.file.format=float", "-o", "audio.file.type=wav",
           "-F", str(wav_path), str(soundfont), str(midi_path)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ScoreError("fluidsynth did not finish (a note that never ends?)") from None
    if proc.returncode != 0 or not wav_path.is_file():
        message = (proc.stderr or proc.stdout).strip().splitlines()
        raise ScoreError(f"fluidsynth failed: {message[-1][:120] if message else proc.returncode}")
    data, _ = sf.read(str(wav_path), dtype="float32", always_2d=True)
    data = data.T  # [2, S]
    if channels == 1:
        return data.mean(axis=0, keepdims=True)
    return np.ascontiguousarray(data[:channels])
