"""Synthetic token caches for tests of the dataset and training (no codec needed)."""

from pathlib import Path

import numpy as np

from stemcodec.corpus.cache import FORMAT_VERSION, write_codes, write_json

CODEC = {"id": "debug-test-codec", "name": "debug", "sample_rate": 24000, "frame_rate": 75.0,
         "num_codebooks": 2, "cardinality": 16, "channels": 1, "bandwidth": 1.5}


def make_cache(root: Path, n_songs: int = 6, slots=("drums", "bass", "piano"), frames: int = 80,
               codec: dict = CODEC, seed: int = 0, objects=None) -> Path:
    """A cache whose tokens follow simple per-slot patterns, so a model can learn them.
    `objects`: per song (cycled) a list of one object name per slot; None: the entries have
    no `objects` field (a cache made before objects were kept)."""
    rng = np.random.default_rng(seed)
    K, Q, card = len(slots), codec["num_codebooks"], codec["cardinality"]
    songs = {}
    for s in range(n_songs):
        t = np.arange(frames)
        codes = np.zeros((K, Q, frames), dtype=np.int64)
        for k in range(K):
            for q in range(Q):
                period = 2 + k + q
                codes[k, q] = (t // period + s + k * 3 + q) % card
        sid = f"song{s:02d}"
        write_codes(root / "songs" / f"{sid}.npy", codes)
        write_codes(root / "songs" / f"{sid}.mix.npy", codes[:1] + 0)
        songs[sid] = {"id": sid, "source": f"{sid}.wav", "kind": "stems", "frames": frames,
                      "seconds": frames / 75, "present": [True] * K, "silent": [False] * K,
                      "shard": f"songs/{sid}.npy", "mix_shard": f"songs/{sid}.mix.npy",
                      "codec_id": codec["id"], "files": {}, "separator": None}
        if objects is not None:
            songs[sid]["objects"] = list(objects[s % len(objects)])
    rng.random()
    write_json(root / "manifest.json", {"version": FORMAT_VERSION, "codec": codec,
                                        "slots": list(slots), "songs": songs})
    return root
