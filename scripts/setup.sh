#!/usr/bin/env bash
# Set up stemcodec from nothing: Debian packages (when root), a venv, the package and its deps.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

need_apt=()
command -v fluidsynth >/dev/null 2>&1 || need_apt+=(fluidsynth)
[ -e /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need_apt+=(fluid-soundfont-gm)
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
# other General MIDI SoundFonts, optional: the instrument classifier trains on corpora rendered
# with them too (TimGM6mb) and is validated on one held out (MuseScore General); docs/objects.md
want_apt=()
[ -e /usr/share/sounds/sf2/TimGM6mb.sf2 ] || want_apt+=(timgm6mb-soundfont)
[ -e /usr/share/sounds/sf3/MuseScore_General_Lite.sf3 ] || want_apt+=(musescore-general-soundfont-small)
if [ $((${#need_apt[@]} + ${#want_apt[@]})) -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    apt-get update -qq || echo "setup: warning: apt-get update failed" >&2
    if [ ${#need_apt[@]} -gt 0 ]; then
      echo "setup: installing Debian packages: ${need_apt[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    fi
    for pkg in "${want_apt[@]}"; do  # one at a time: a missing one stops nothing
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$pkg" >/dev/null 2>&1 ||
        echo "setup: warning: could not install $pkg (an optional SoundFont; the classifier recipe needs it)" >&2
    done
  else
    [ ${#need_apt[@]} -eq 0 ] ||
      echo "setup: please install the Debian packages: ${need_apt[*]} (sudo apt-get install ${need_apt[*]})" >&2
    [ ${#want_apt[@]} -eq 0 ] ||
      echo "setup: warning: optional SoundFonts missing: ${want_apt[*]} (sudo apt-get install ${want_apt[*]})" >&2
  fi
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null 2>&1 || true
echo "setup: installing stemcodec and its dependencies into $VENV (first time: a few minutes)"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]"
