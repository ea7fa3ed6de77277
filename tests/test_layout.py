"""corpus/layout.py: the one reader of <piece>/<slot>.wav, the piece key and the split."""

import json
from pathlib import Path

import pytest

from stemcodec.corpus.dataset import DataConfig, WindowDataset, split_songs
from stemcodec.corpus.layout import (
    find_pieces,
    piece_key,
    song_id,
    split_by_piece,
    split_pieces,
)
from stemcodec.corpus.recipes import RECIPES
from stemcodec.corpus.render import make_jobs
from stemcodec.corpus.scores import Source
from stemcodec.errors import UserError
from synthetic_cache import make_cache

VOCAB = ["drums", "bass", "other", "vocals", "guitar", "piano"]


def rendered_ids(tunes: int = 40, variants: int = 3) -> list[str]:
    """Piece ids as render writes them: the recipe's tunes in three variants."""
    sources = [Source(f"/data/essenFolksong/han{t // 10}.abc", t % 10 + 1, "folk-band")
               for t in range(tunes)]
    return [job.piece_id for job in make_jobs(sources, "folk-band", variants, seed=0)]


def test_versions_parts_and_recipes_of_one_tune_share_a_key():
    tune = "essenFolksong_han1_0003"
    names = [f"folk-band_{tune}_v0", f"folk-band_{tune}_v2", f"solo-piano_{tune}~2_v1",
             song_id(Path(f"corpora/folk-band_{tune}_v1")), song_id(Path(f"folk-band_{tune}~3_v0"))]
    assert {piece_key(n) for n in names} == {tune}
    # separated songs: the file's name, whatever its folder or prepare's id
    assert piece_key("album/track.mp3") == piece_key(song_id(Path("album/track.mp3"))) == "track"
    assert piece_key("My Song") == piece_key(song_id(Path("My Song")))
    # different tunes keep different keys
    assert len({piece_key(n) for n in rendered_ids(10, 1)}) == 10


def test_collisions_render_numbers_are_parts_of_one_piece():
    a, b = Source("/x/set/song.mid", 0, "midi"), Source("/y/set/song.mid", 0, "midi")
    ids = [job.piece_id for job in make_jobs([a, b], None, 2, seed=0)]
    assert ids == ["set_song_v0", "set_song_v1", "set_song~2_v0", "set_song~2_v1"]
    assert {piece_key(i) for i in ids} == {"set_song"}
    assert all(not piece_key(f"{r}_tune_v0").startswith(r) for r in RECIPES)


def test_validation_songs_never_have_a_sibling_in_training():
    """Regression: split_songs hashed the song id, so the _v0/_v1/_v2 variants of one tune
    landed on both sides and the validation loss was measured on tunes heard in training."""
    ids = [song_id(Path(i)) for i in rendered_ids()]  # what a prepared cache holds
    split = split_songs(ids, 0.25)
    valid_tunes = {piece_key(s) for s in split["valid"]}
    train_tunes = {piece_key(s) for s in split["train"]}
    assert valid_tunes and train_tunes
    assert not valid_tunes & train_tunes
    assert sorted(split["train"] + split["valid"]) == sorted(ids)
    # every variant of a validation tune is in validation
    assert len(split["valid"]) == 3 * len(valid_tunes)


def test_window_dataset_holds_out_whole_tunes(tmp_path):
    root = make_cache(tmp_path / "cache", n_songs=30)
    manifest = json.loads((root / "manifest.json").read_text())
    for n, entry in enumerate(manifest["songs"].values()):  # ten tunes, three variants each
        entry["source"] = f"corpus/folk-band_tune{n // 3}_v{n % 3}"
    (root / "manifest.json").write_text(json.dumps(manifest))
    cfg = DataConfig(window=16, valid_fraction=0.3)
    train, valid = (WindowDataset(str(root), VOCAB, cfg, side) for side in ("train", "valid"))
    tunes = {side: {data.cache.songs[s].source.split("_v")[0] for s in data.songs}
             for side, data in (("train", train), ("valid", valid))}
    assert tunes["valid"] and tunes["train"] and not tunes["valid"] & tunes["train"]
    assert len(valid.songs) == 3 * len(tunes["valid"])


def test_small_sets_still_get_one_validation_piece():
    assert split_by_piece(["a_v0", "a_v1", "b_v0"], 0.01, piece_key)["valid"] in (
        ["a_v0", "a_v1"], ["b_v0"])
    assert split_by_piece(["a_v0", "a_v1"], 0.01, piece_key)["valid"] == []  # one tune: no split
    assert split_by_piece(["a_v0", "b_v0"], 0.0, piece_key)["valid"] == []


def write(path: Path, text: str = "RIFF") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_find_pieces_reads_stems_mix_meta_and_passes_over_the_rest(tmp_path):
    corpus = tmp_path / "corpus"
    for v in range(2):
        piece = corpus / f"chorales_bach_bwv66.6_v{v}"
        for slot in ("bass", "piano"):
            write(piece / f"{slot}.wav")
        write(piece / "mix.wav")
        write(piece / "meta.json", json.dumps({"variant": v}))
    write(corpus / "other_v0" / "guitar.flac")
    write(corpus / "other_v0" / "meta.json", "{broken")
    write(corpus / ".unfinished_v0.tmp" / "bass.wav")  # a render that did not finish
    write(corpus / "notes" / "readme.txt")
    write(corpus / "strings_only" / "strings.wav")  # not an instrument of the vocabulary

    pieces = find_pieces([corpus])
    assert [p.name for p in pieces] == ["chorales_bach_bwv66.6_v0", "chorales_bach_bwv66.6_v1",
                                        "other_v0"]
    first = pieces[0]
    assert list(first.stems) == ["bass", "piano"] and first.mix.name == "mix.wav"
    assert first.meta == {"variant": 0} and first.key == "bach_bwv66.6"
    assert pieces[2].stems == {"guitar": corpus / "other_v0" / "guitar.flac"}
    assert pieces[2].mix is None and pieces[2].meta == {}
    split = split_pieces(pieces, 0.5)
    assert {p.key for p in split["train"]}.isdisjoint(p.key for p in split["valid"])


@pytest.mark.parametrize("case, expected", [("missing", "is not a folder"),
                                            ("empty", "no .wav stems under")])
def test_a_corpus_without_pieces_is_one_line(tmp_path, case, expected):
    folder = tmp_path / "corpus"
    if case == "empty":
        write(folder / "piece" / "notes.txt")
    with pytest.raises(UserError, match=expected) as err:
        find_pieces([folder])
    assert "\n" not in str(err.value) and str(folder) in str(err.value)


def test_songs_named_by_their_folder_do_not_share_one_key():
    """Separated songs stored as `<title>/mix.wav` and solo recordings as `<piece>/piano.wav`
    are told apart by their folder, so a cache of them still gets a validation side."""
    from stemcodec.corpus.layout import song_id
    titles = [f"title {i}" for i in range(40)]
    for name in ("mix.wav", "piano.wav", "Mixture.flac"):
        ids = [song_id(Path(t) / name) for t in titles]
        assert len({piece_key(i) for i in ids}) == 40
        split = split_songs(ids, 0.1)
        assert split["valid"] and split["train"]
    assert piece_key(song_id(Path("album/track.mp3"))) == "track"
