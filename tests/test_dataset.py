import numpy as np
import pytest
import torch

from stemcodec.corpus.cache import CacheError, TokenCache
from stemcodec.corpus.dataset import DataConfig, WindowDataset, split_songs
from stemcodec.errors import UserError
from synthetic_cache import make_cache

VOCAB = ["drums", "bass", "other", "vocals", "guitar", "piano"]


@pytest.fixture
def cache(tmp_path):
    return TokenCache(make_cache(tmp_path / "cache", n_songs=12))


def test_songs_split_by_song_never_by_window(cache):
    cfg = DataConfig(window=16, valid_fraction=0.25)
    train = WindowDataset(cache, VOCAB, cfg, "train")
    valid = WindowDataset(cache, VOCAB, cfg, "valid")
    assert train.songs and valid.songs
    assert not set(train.songs) & set(valid.songs)
    assert set(train.songs) | set(valid.songs) == set(cache.songs)
    assert {s for s, _ in train.items} == set(train.songs)
    # a song stays on its side when other songs join the cache
    more = split_songs([*cache.songs, "new_song_a", "new_song_b"], 0.25)
    assert set(valid.songs) <= set(more["valid"])


def test_items_are_deterministic_for_seed_and_epoch(cache):
    cfg = DataConfig(window=16, p_all_slots=0.3, p_given=0.5)
    a = WindowDataset(cache, VOCAB, cfg, "train", seed=3)
    b = WindowDataset(cache, VOCAB, cfg, "train", seed=3)
    for i in range(len(a)):
        x, y = a[(2, i)], b[(2, i)]
        assert all(torch.equal(x[k], y[k]) for k in x)
    differs = any(not torch.equal(a[(0, i)]["present"], a[(1, i)]["present"])
                  or not torch.equal(a[(0, i)]["codes"], a[(1, i)]["codes"])
                  for i in range(len(a)))
    assert differs


def test_slot_sampling_keeps_one_to_k_slots_and_never_gives_them_all(cache):
    cfg = DataConfig(window=16, p_all_slots=0.2, p_given=0.8)
    data = WindowDataset(cache, VOCAB, cfg, "train")
    kept_counts, given_seen = set(), False
    for epoch in range(3):
        for i in range(len(data)):
            item = data[(epoch, i)]
            kept = int(item["present"].sum())
            assert 1 <= kept <= 3
            assert not (item["given"] & ~item["present"]).any()
            assert int((item["present"] & ~item["given"]).sum()) >= 1
            kept_counts.add(kept)
            given_seen |= bool(item["given"].any())
    assert kept_counts == {1, 2, 3} and given_seen


def test_window_holds_the_cached_tokens_and_instrument_ids(cache):
    data = WindowDataset(cache, VOCAB, DataConfig(window=16), "valid")
    song, start = data.items[1]
    item = data[1]
    assert item["codes"].shape == (3, 2, 16)
    assert np.array_equal(item["codes"].numpy(), cache.codes(song)[:, :, start:start + 16])
    assert item["instrument"].tolist() == [0, 1, 5]
    assert item["valid"].all() and not item["given"].any()


def test_short_song_is_padded_and_marked(tmp_path):
    cache = TokenCache(make_cache(tmp_path / "c", n_songs=2, frames=10))
    item = WindowDataset(cache, VOCAB, DataConfig(window=16), "train")[(0, 0)]
    assert item["valid"].sum() == 10 and not item["valid"][10:].any()


def test_slot_outside_vocabulary_and_missing_cache_are_one_line(cache, tmp_path):
    with pytest.raises(UserError, match="slot\\(s\\) drums, bass that the model vocabulary"):
        WindowDataset(cache, ["piano"], DataConfig(), "train")
    with pytest.raises(CacheError, match="is not a token cache"):
        TokenCache(tmp_path / "nothing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "manifest.json").write_text("{not json")
    with pytest.raises(CacheError, match="corrupt"):
        TokenCache(tmp_path / "bad")
