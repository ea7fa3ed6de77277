"""What both trainers (train/train.py, train/train_codec.py) share.

Rooms: config.py (the config dataclasses of both, their checks, argument parsing), run.py
(the run folder: checkpoints written atomically and rotated, export, resume and its
compatibility check, train_config.json, log.jsonl, trackers), progress.py (the step counter,
progress bar, cadence, non-finite-loss guard), schedule.py (learning rate), samplers.py
(batches as a function of the step), ema.py (weight averaging), codec_data.py (the codec
trainer's segments of rendered stems).
"""
