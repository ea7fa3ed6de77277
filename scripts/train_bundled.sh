#!/usr/bin/env bash
# Rebuild the bundled models in stemcodec/assets/ from nothing, with the recipe they were
# trained with: corpora -> mini codec -> token caches -> generators (+ the report's baselines)
# -> classifier -> report (docs/report).
#
#   bash scripts/train_bundled.sh            # everything (CPU: hours; one GPU: minutes)
#   bash scripts/train_bundled.sh codec      # one stage: corpora held-out codec caches
#                                            #   generators baselines classifier report install
#                                            #   (decoder: the codec stage's second half)
# Every stage resumes where it stopped (render and prepare skip finished pieces, the trainers
# resume from their last checkpoint): after an interruption run the same command again.
# THREADS (default 1) is torch's thread count per trainer: on a 2-core machine one thread
# per job, two jobs at once, outruns two threads fighting over a core with other work.
# Stopping the script (Ctrl-C) stops the trainers it started, so a rerun never finds two
# trainers writing one run folder.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
ACCELERATE="${ACCELERATE:-.venv/bin/accelerate launch --num_processes 1}"
THREADS="${THREADS:-1}"
ASSETS=stemcodec/assets
trap 'kill $(jobs -p) 2>/dev/null || true' INT TERM EXIT

train() {  # the trainers alone run with THREADS threads
  OMP_NUM_THREADS="$THREADS" $ACCELERATE "$@"
}

corpora() {
  $PY -m stemcodec.render --recipe folk-band --limit 240 --variants 2 --pcm16 --out data/corpus/folk-band
  $PY -m stemcodec.render --recipe solo-piano --limit 200 --variants 1 --pcm16 --out data/corpus/solo-piano
}

held-out() {  # pieces after the training corpora: the codec's quality is measured on them
  $PY -m stemcodec.render --recipe folk-band --skip 240 --limit 16 --variants 1 --pcm16 --out data/held-out/folk-band
  $PY -m stemcodec.render --recipe solo-piano --skip 200 --limit 8 --variants 1 --pcm16 --out data/held-out/solo-piano
}

codec() {  # the second design from nothing (configs/codec-mini.yaml, docs/codec.md): a spectral
  # encoder, an iSTFT decoder with an accumulated phase and a noise gate; mel, linear and
  # log-frequency STFT losses, the phase advance training the frequencies. 4000 steps: about
  # 70 min on one CPU thread; then its decoder alone for 2000 more (the `decoder` stage, 35
  # min). The same command resumes
  train train/train_codec.py --config configs/codec-mini.yaml threads="$THREADS" out=runs/codec-mini
  install_codec
  decoder
}

decoder() {  # the bundled codec's decoder trained further, its encoder and codebooks frozen: the
  # tokens and the codec id stay, so caches and generators stay valid (docs/codec.md); resumes.
  # A later session trains it on from the installed codec with another out= (docs/codec.md)
  train train/train_codec.py --config configs/codec-mini.yaml threads="$THREADS" \
    init_from=$ASSETS/codec-mini "freeze=[encoder,quantizer]" steps=2000 optim.lr=2e-4 \
    optim.warmup_steps=100 out=runs/codec-mini-decoder
  install_codec runs/codec-mini-decoder
}

caches() {
  $PY -m stemcodec.prepare data/corpus/folk-band --out data/cache/folk-band --slots vocals-free --codec mini
  $PY -m stemcodec.prepare data/corpus/solo-piano --out data/cache/solo-piano --slots solo-piano --codec mini
}

generators() {  # the two bundled generators side by side, one thread each
  train train/train.py --config configs/mini.yaml &
  train train/train.py --config configs/solo-piano.yaml &
  wait_all
  install_generators
}

baselines() {  # for the evaluation report only, not bundled: the same recipe and budget
  train train/train.py --config configs/baseline-mix.yaml &
  train train/train.py --config configs/baseline-no-slot-attention.yaml &
  wait_all
  # the one-stream model is cheaper per step: also at about the same CPU time
  train train/train.py --config configs/baseline-mix.yaml steps=5000 out=runs/baseline-mix-5000
}

report() {  # docs/report: real held-out stems, the bundled band model and the baselines
  local sets=docs/report/sets
  $PY eval/report.py --real data/held-out/folk-band --model $ASSETS/generator-mini \
    --baseline-mix runs/baseline-mix --baseline-noslot runs/baseline-no-slot-attention \
    --pieces 16 --duration 20 --out docs/report
  $PY eval/stem_sets.py --checkpoint runs/baseline-mix-5000 --slots vocals-free --pieces 16 \
    --duration 20 --out $sets/baseline-mix-5000
  $PY eval/report.py --set "real stems=$sets/real" --set "stemcodec (generator-mini)=$sets/model" \
    --set "no slot attention=$sets/baseline-noslot" --set "mix baseline=$sets/baseline-mix" \
    --set "mix baseline, 5000 steps=$sets/baseline-mix-5000" --out docs/report
}

classifier() {  # the instrument classifier of the identity metric (eval/train_classifier.py)
  local d=data/classifier-corpus
  $PY -m stemcodec.render --recipe chorales --limit 80 --variants 2 --pcm16 --out $d/chorales
  $PY eval/train_classifier.py --write-lines $d/lines-midi
  $PY -m stemcodec.render $d/lines-midi --pcm16 --out $d/lines
  # other SoundFonts (docs/objects.md): TimGM6mb trains, MuseScore General is held out
  local tim=/usr/share/sounds/sf2/TimGM6mb.sf2 muse=/usr/share/sounds/sf3/MuseScore_General_Lite.sf3
  $PY -m stemcodec.render --recipe folk-band --limit 80 --variants 1 --pcm16 --soundfont $tim --out $d/timgm/folk-band
  $PY -m stemcodec.render --recipe solo-piano --limit 40 --variants 1 --pcm16 --soundfont $tim --out $d/timgm/solo-piano
  $PY -m stemcodec.render --recipe folk-band --skip 240 --limit 24 --variants 1 --pcm16 --soundfont $muse --out $d/musescore/folk-band
  $PY -m stemcodec.render --recipe solo-piano --skip 200 --limit 8 --variants 1 --pcm16 --soundfont $muse --out $d/musescore/solo-piano
  OMP_NUM_THREADS="$THREADS" $PY eval/train_classifier.py data/corpus/folk-band \
    data/corpus/solo-piano $d/chorales $d/lines $d/timgm/folk-band $d/timgm/solo-piano \
    --valid $d/musescore/folk-band --valid $d/musescore/solo-piano \
    --threads "$THREADS" --out $ASSETS/classifier
}

wait_all() {  # wait for the background jobs; the first to fail stops the others
  local job
  for job in $(jobs -p); do
    if ! wait "$job"; then
      kill $(jobs -p) 2>/dev/null || true
      return 1
    fi
  done
}

install_model() {  # RUN NAME [half]: the weights and config only, never the training state;
  # stored in float16 (the assets stay small)
  $PY -c "import sys; from stemcodec.checkpoint import copy_pretrained as c; c(*sys.argv[1:3], half=sys.argv[3] == 'half')" "$1" "$ASSETS/$2" "${3:-full}"
  echo "installed $1 as $ASSETS/$2 ($(du -h "$ASSETS/$2/model.safetensors" | cut -f1))"
}

install_codec() {  # [RUN]: float16; the codec it replaces stays as codec-mini-<hash> while a
  # bundled generator is trained on its tokens (stemcodec/codec/bundle.py), and goes once none is
  $PY -c "import sys; from stemcodec.codec import bundle; print('installed', sys.argv[1], 'as codec-mini:', bundle.install(sys.argv[1]).codec_id)" "${1:-runs/codec-mini}"
}

install_generators() {
  install_model runs/mini generator-mini half
  install_model runs/solo-piano generator-solo-piano half
  $PY -c "from stemcodec.codec import bundle; print('removed', bundle.prune() or 'no earlier codec')"
}

stages=("$@")
[ ${#stages[@]} -gt 0 ] || stages=(corpora held-out codec caches generators baselines classifier report)
for stage in "${stages[@]}"; do
  case "$stage" in
    corpora|held-out|codec|decoder|caches|generators|baselines|classifier|report) echo "== $stage"; "$stage" ;;
    install) install_codec; install_generators ;;
    *) echo "unknown stage '$stage'; stages: corpora held-out codec decoder caches generators baselines classifier report install" >&2
       exit 2 ;;
  esac
done
