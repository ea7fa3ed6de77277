"""What both trainers (train/train.py, train/train_codec.py) share.

Rooms: config.py (the config dataclasses of both, their checks, argument parsing over a run's
stored config, --help's list of keys), run.py (the run folder: checkpoints written atomically
and rotated, export, resume and its compatibility check, train_config.json, log.jsonl, trackers), progress.py (the step counter,
progress bar, cadence, non-finite-loss guard), schedule.py (learning rate), samplers.py
(batches as a function of the step), ema.py (weight averaging), codec_data.py (the codec
trainer's segments of rendered stems), signals.py (SIGINT / SIGTERM: finish the step, save a
checkpoint, stop with one line), launch.py (`stemcodec launch`: accelerate launch that passes
those signals on and exits with the trainer's code, without a traceback).
"""
