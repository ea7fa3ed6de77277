"""Instrument objects (issue 16): a model without them is the model it was, bit for bit; the
cache carries each stem's object, old caches still load; references come from another part of
the same stem; dropout leaves slots unconditioned; object ids and clips reach the model and
its KV-cache sampling; --instrument / --timbre round-trip into meta.json, their mistakes are
one line, and unasked slots draw an instrument of their family, the same for the same seed."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from stemcodec import StemGenerator
from stemcodec.corpus.cache import TokenCache, write_codes, write_json
from stemcodec.corpus.dataset import DataConfig, WindowDataset
from stemcodec.errors import UserError
from stemcodec.generate import main
from stemcodec.generation.objects import lane_labels
from stemcodec.model import ModelConfig, MultiStreamTransformer, Objects
from stemcodec.model.sampling import generate_codes
from stemcodec.objects import NUM_OBJECTS, by_family, object_id, program_object, stem_objects
from synthetic_cache import make_cache
from tiny_models import TRAINED_OBJECTS, tiny_checkpoint
from train_scripts import ROOT, ok, run_script

SLOTS = "drums,bass,guitar"

# what tiny_checkpoint(objects=False).generate("drums,bass,piano", 0.12, seed=3, top_k=50)
# gave before objects existed (the code of commit c69157c)
TOKENS_BEFORE = [
    999, 831, 860, 626, 592, 92, 798, 40, 881, 694, 843, 1015, 45, 673, 434, 953, 285, 892,
    701, 755, 263, 938, 148, 296, 492, 277, 1007, 612, 748, 812, 232, 929, 836, 331, 689, 504,
    549, 835, 937, 396, 602, 869, 495, 836, 474, 69, 877, 676, 105, 935, 73, 673, 262, 951,
    666, 550, 141, 393, 322, 761, 393, 891, 382, 864, 263, 861, 186, 358, 633, 967, 496, 560,
    378, 438, 932, 163, 627, 230, 960, 896, 454, 956, 956, 611, 103, 271, 956, 26, 751, 45,
    957, 890, 325, 313, 1001, 384, 629, 663, 23, 707, 654, 164, 602, 376, 737, 23, 560, 404]
# the windows, slots and masks of a dataset before objects existed (same commit)
WINDOWS_BEFORE = "93eaf35fd074bc2d0f6ec261b56324aec0afc460"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("objects")
    return {"plain": tiny_checkpoint(root / "plain"),
            "objects": tiny_checkpoint(root / "objects", objects=True)}


@pytest.fixture(scope="module")
def generator(checkpoints):
    return StemGenerator.from_pretrained(checkpoints["objects"], device="cpu", threads=1)


def tiny_model(**changes) -> MultiStreamTransformer:
    torch.manual_seed(0)
    cfg = dict(num_codebooks=2, cardinality=16, dim=32, num_layers=2, num_heads=2,
               max_frames=64, objects=True)
    return MultiStreamTransformer(ModelConfig(**{**cfg, **changes})).eval()


def random_inputs(B=2, K=3, T=10, Q=2, card=16):
    g = torch.Generator().manual_seed(1)
    seq = torch.randint(0, card + 1, (B, K, Q, T), generator=g)
    return seq, torch.arange(K).repeat(B, 1)


# -- the old path -----------------------------------------------------------------------------
def test_a_model_without_objects_generates_the_tokens_it_did_before(checkpoints):
    g = StemGenerator.from_pretrained(checkpoints["plain"], device="cpu", threads=1)
    out = g.generate("drums,bass,piano", 0.12, seed=3, top_k=50)
    assert out.codes.flatten().tolist() == TOKENS_BEFORE
    assert "objects" not in out.meta and "timbres" not in out.meta
    model = g.model_for("drums,bass,piano").model
    assert not any("object" in name for name in model.state_dict())
    assert model.instrument_objects is None
    seq, instrument = random_inputs(K=3, Q=4, card=1024)
    with pytest.raises(ValueError, match="no instrument objects"):
        model(seq, instrument, objects=Objects(torch.zeros(2, 3, dtype=torch.long)))


def test_a_checkpoint_config_without_the_object_keys_loads_as_before(tmp_path, checkpoints):
    folder = tmp_path / "old"
    folder.mkdir()
    config = json.loads((checkpoints["plain"] / "config.json").read_text())
    for key in ("objects", "num_objects", "timbre_layers"):
        config.pop(key)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "model.safetensors").write_bytes(
        (checkpoints["plain"] / "model.safetensors").read_bytes())
    old = MultiStreamTransformer.from_pretrained(folder)
    new = MultiStreamTransformer.from_pretrained(checkpoints["plain"])
    assert old.config.objects is False
    seq, instrument = random_inputs(K=3, Q=4, card=1024)
    assert torch.equal(old(seq, instrument), new(seq, instrument))


def test_windows_and_slots_of_the_dataset_are_what_they_were(tmp_path):
    root = make_cache(tmp_path / "cache", frames=200)
    digest = hashlib.sha1()
    for split in ("train", "valid"):
        ds = WindowDataset(root, ["drums", "bass", "piano", "other"],
                           DataConfig(window=24, p_all_slots=0.3, p_given=0.5), split, seed=3)
        for epoch in (0, 1):
            ds.set_epoch(epoch)
            for i in range(len(ds)):
                item = ds[i]
                for key in ("codes", "instrument", "present", "given", "valid"):
                    digest.update(item[key].numpy().tobytes())
    assert digest.hexdigest() == WINDOWS_BEFORE


# -- the vocabulary -----------------------------------------------------------------------------
def test_object_names_are_kebab_case_gm_programs_and_drum_kits():
    families = by_family()
    assert list(families) == ["drums", "bass", "guitar", "piano", "other", "vocals"]
    assert "nylon-guitar" in families["guitar"] and "electric-piano-1" in families["piano"]
    assert families["drums"][0] == "standard-kit" and "tr-808-kit" in families["drums"]
    assert NUM_OBJECTS == 1 + 128 + 9 and object_id("unknown") == 0
    assert program_object(24) == "nylon-guitar" and program_object(25, drum=True) == "tr-808-kit"
    meta = {"stem_instruments": {"other": {"program": 40, "drum": False},
                                 "drums": {"program": 32, "drum": True}}}
    assert stem_objects(meta, ["other", "drums", "bass"]) == {
        "other": "violin", "drums": "jazz-kit", "bass": "unknown"}
    assert stem_objects({}, ["piano"]) == {"piano": "unknown"}


# -- data: prepare, the cache, the dataset ---------------------------------------------------------
def test_prepare_carries_each_stems_object_into_the_cache(tmp_path, write_tone):
    from stemcodec.corpus.prepare import main as prepare
    songs = tmp_path / "songs"
    write_tone(songs / "piece1" / "drums.wav", 0.5, freq=100)
    write_tone(songs / "piece1" / "guitar.wav", 0.5, freq=220)
    meta = {"stem_instruments": {"drums": {"program": 40, "drum": True},
                                 "guitar": {"program": 26, "drum": False}}}
    (songs / "piece1" / "meta.json").write_text(json.dumps(meta))
    write_tone(songs / "unlabelled" / "bass.wav", 0.5, freq=55)  # no meta.json
    out = tmp_path / "cache"
    args = [str(songs), "--out", str(out), "--codec", "debug", "--slots", "drums,bass,guitar",
            "--no-mix"]
    assert prepare(args) == 0
    entries = {e.source: e for e in TokenCache(out).songs.values()}
    assert entries["piece1"].objects == ["brush-kit", "unknown", "jazz-guitar"]
    assert entries["unlabelled"].objects is None
    assert entries["unlabelled"].object_names(3) == ["unknown"] * 3
    # a cache prepared before objects were kept: a rerun labels it without encoding again
    shard = out / entries["piece1"].shard
    before = shard.stat().st_mtime_ns
    song_json = out / "songs" / f"{entries['piece1'].id}.json"
    old = json.loads(song_json.read_text())
    old.pop("objects")
    write_json(song_json, old)
    assert prepare(args) == 0
    again = {e.source: e for e in TokenCache(out).songs.values()}
    assert again["piece1"].objects == ["brush-kit", "unknown", "jazz-guitar"]
    assert shard.stat().st_mtime_ns == before


def test_an_old_cache_loads_with_unknown_objects_everywhere(tmp_path):
    root = make_cache(tmp_path / "cache", frames=200)  # entries without `objects`
    for split in ("train", "valid"):
        ds = WindowDataset(root, ["drums", "bass", "piano"], DataConfig(window=24), split)
        assert all(not ds[i]["object"].any() for i in range(len(ds)))
        assert ds.object_names() == {}


def ramp_cache(root: Path, frames: int, objects=("jazz-kit", "finger-bass")) -> Path:
    """One song whose token at frame t of slot k is 100 * k + t: a clip tells where it was cut."""
    codec = {"id": "ramp", "name": "debug", "sample_rate": 24000, "frame_rate": 75.0,
             "num_codebooks": 2, "cardinality": 1024, "channels": 1}
    make_cache(root, n_songs=1, slots=("drums", "bass"), frames=frames, codec=codec,
               objects=[list(objects)])
    t = np.arange(frames)
    codes = np.stack([np.stack([100 * k + t] * 2) for k in range(2)])  # [K, Q, T]
    write_codes(root / "songs" / "song00.npy", codes)
    return root


@pytest.mark.parametrize("split", ["train", "valid"])
def test_the_reference_is_another_part_of_the_same_stem(tmp_path, split):
    root = ramp_cache(tmp_path / "cache", frames=300)
    config = DataConfig(window=40, reference_frames=50, valid_fraction=0.0 if split == "train"
                        else 1.0, object_dropout=0.0, reference_dropout=0.0, p_all_slots=1.0)
    ds = WindowDataset(root, ["drums", "bass"], config, split)
    for epoch in range(3):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            window = set(item["codes"][0, 0].tolist())
            for k in range(2):
                ref = item["reference"][k, 0]
                assert bool(item["reference_mask"][k].all())
                frames = (ref - 100 * k).tolist()
                assert frames == list(range(frames[0], frames[0] + 50))  # one stretch, its own stem
                assert not window & set(frames)  # clear of the window
            assert item["object"].tolist() == [object_id("jazz-kit"), object_id("finger-bass")]


def test_a_song_too_short_for_a_reference_has_none_and_a_short_one_a_shorter_clip(tmp_path):
    config = DataConfig(window=40, reference_frames=50, valid_fraction=1.0)
    none = WindowDataset(ramp_cache(tmp_path / "a", frames=45), ["drums", "bass"], config, "valid")
    assert not none[0]["reference_mask"].any()
    short = WindowDataset(ramp_cache(tmp_path / "b", frames=70), ["drums", "bass"], config,
                          "valid")
    item = short[0]  # window [0, 40): 30 frames after it, at least a quarter of 50
    assert item["reference_mask"].sum(dim=1).tolist() == [30, 30]
    assert item["reference"][1, 0, :30].tolist() == [100 + t for t in range(40, 70)]


def test_dropout_leaves_slots_without_id_or_reference_in_training_only(tmp_path):
    root = ramp_cache(tmp_path / "cache", frames=300)
    for p, conditioned in ((1.0, False), (0.0, True)):
        config = DataConfig(window=40, reference_frames=50, valid_fraction=0.0,
                            object_dropout=p, reference_dropout=p, p_all_slots=1.0)
        item = WindowDataset(root, ["drums", "bass"], config, "train")[0]
        assert bool(item["object"].all()) is conditioned
        assert bool(item["reference_mask"].any(dim=1).all()) is conditioned
    half = DataConfig(window=40, reference_frames=50, valid_fraction=0.0, object_dropout=0.5,
                      reference_dropout=0.5, p_all_slots=1.0)
    ds = WindowDataset(root, ["drums", "bass"], half, "train")
    kinds = set()
    for epoch in range(8):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            item = ds[i]
            kinds |= {(bool(o), bool(m.any())) for o, m in zip(item["object"],
                                                                 item["reference_mask"])}
    assert kinds == {(True, True), (True, False), (False, True), (False, False)}
    valid = DataConfig(window=40, reference_frames=50, valid_fraction=1.0, object_dropout=1.0,
                       reference_dropout=1.0)
    item = WindowDataset(root, ["drums", "bass"], valid, "valid")[0]
    assert item["object"].all() and item["reference_mask"].any(dim=1).all()


# -- the model ------------------------------------------------------------------------------------
def test_the_object_id_and_the_reference_reach_the_model():
    model = tiny_model(slot_attention=False)  # slots independent: a change shows where it is
    seq, instrument = random_inputs()
    ids = torch.tensor([[5, 25, 41]] * 2)
    base = model(seq, instrument, objects=Objects(ids))
    other = ids.clone()
    other[:, 1] = 26
    changed = model(seq, instrument, objects=Objects(other))
    assert not torch.allclose(changed[:, 1], base[:, 1])
    assert torch.equal(changed[:, 0], base[:, 0]) and torch.equal(changed[:, 2], base[:, 2])
    reference = torch.randint(0, 16, (2, 3, 2, 12), generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(2, 3, 12, dtype=torch.bool)
    mask[:, 2] = True
    with_clip = model(seq, instrument, objects=Objects(ids, reference, mask))
    assert not torch.allclose(with_clip[:, 2], base[:, 2])
    assert torch.equal(with_clip[:, :2], base[:, :2])  # no clip: the "no reference" vector
    # nothing at all is the learnt none vector: id 0, no reference
    none = model(seq, instrument, objects=Objects(torch.zeros(2, 3, dtype=torch.long)))
    assert torch.equal(none, model(seq, instrument))
    # the condition is the same at every frame: one vector per layer and slot
    assert model.object_condition(Objects(ids)).shape == (2, 2, 3, 32)


def test_sampling_with_objects_gives_the_same_tokens_with_and_without_the_kv_cache():
    model = tiny_model()
    objects = Objects(torch.tensor([[5, 25, 41]]),
                      torch.randint(0, 16, (1, 3, 2, 8), generator=torch.Generator().manual_seed(3)),
                      torch.ones(1, 3, 8, dtype=torch.bool))
    instrument = torch.arange(3)[None]
    runs = [generate_codes(model, instrument, 12, generator=torch.Generator().manual_seed(0),
                           use_cache=cache, objects=objects, window=6) for cache in (True, False)]
    assert torch.equal(runs[0], runs[1])
    unconditioned = generate_codes(model, instrument, 12, window=6,
                                   generator=torch.Generator().manual_seed(0))
    assert not torch.equal(runs[0], unconditioned)


# -- generation -----------------------------------------------------------------------------------
def test_instrument_and_timbre_round_trip_into_meta_and_the_lane_labels(checkpoints, tmp_path,
                                                                         write_tone, monkeypatch):
    import stemcodec.plots
    drawn = {}
    picture = stemcodec.plots.stems_picture
    monkeypatch.setattr(stemcodec.plots, "stems_picture",
                        lambda *a, labels=None, **kw: drawn.update(labels or {}) or
                        picture(*a, labels=labels, **kw))
    clip = write_tone(tmp_path / "clip.wav", 0.5, freq=330)
    drums = write_tone(tmp_path / "drums_in.wav", 0.4, freq=110)
    assert main(["--checkpoint", str(checkpoints["objects"]), "--slots", SLOTS,
                 "--duration", "0.3", "--seed", "4", "--device", "cpu", "--threads", "1",
                 "--instrument", "guitar=nylon-guitar,bass=finger-bass", "--timbre",
                 f"drums={clip}", "--given", f"drums={drums}", "--out", str(tmp_path / "o")]) == 0
    meta = json.loads((tmp_path / "o" / "meta.json").read_text())
    assert meta["objects"] == {"drums": None, "bass": "finger-bass", "guitar": "nylon-guitar"}
    assert meta["timbres"] == {"drums": str(clip)}
    assert meta["arguments"]["instrument"] == {"guitar": "nylon-guitar", "bass": "finger-bass"}
    assert meta["conditions"] == {"drums": f"given {drums}"}
    assert drawn == {"bass": "bass: finger bass", "guitar": "guitar: nylon guitar",
                     "drums": "drums: like clip.wav"}
    assert lane_labels(meta) == drawn


def test_the_api_takes_the_same_and_an_asked_instrument_changes_the_tokens(generator, tmp_path,
                                                                           write_tone):
    nylon = generator.generate(SLOTS, 0.2, seed=1, instrument={"guitar": "nylon-guitar"})
    steel = generator.generate(SLOTS, 0.2, seed=1, instrument={"guitar": "steel-guitar"})
    assert nylon.meta["objects"]["guitar"] == "nylon-guitar"
    assert not torch.equal(nylon.codes[2], steel.codes[2])
    clip = write_tone(tmp_path / "clip.wav", 0.5, freq=330)
    timbred = generator.generate(SLOTS, 0.2, seed=1, instrument={"guitar": "nylon-guitar"},
                                 timbre={"guitar": clip})
    assert timbred.meta["timbres"] == {"guitar": str(clip)}
    assert not torch.equal(timbred.codes, nylon.codes)


def test_unasked_slots_draw_an_instrument_of_their_family_the_same_for_the_same_seed(generator):
    first = [generator.generate(SLOTS, 0.1, seed=s).meta["objects"] for s in range(8)]
    again = [generator.generate(SLOTS, 0.1, seed=s).meta["objects"] for s in range(8)]
    assert first == again
    for slot in SLOTS.split(","):
        drawn = {objects[slot] for objects in first}
        assert drawn <= set(TRAINED_OBJECTS[slot]) and len(drawn) > 1
    # a slot's draw is its own: asking for another slot's instrument leaves it
    asked = generator.generate(SLOTS, 0.1, seed=3, instrument={"bass": "acoustic-bass"})
    assert asked.meta["objects"]["guitar"] == first[3]["guitar"]
    # a batch row draws as its seed does alone
    batch = generator.generate_batch([2, 5], SLOTS, 0.1)
    assert [b.meta["objects"] for b in batch] == [first[2], first[5]]
    assert torch.equal(batch[1].codes, generator.generate(SLOTS, 0.1, seed=5).codes)


def test_the_stream_plays_the_asked_instrument_as_generate_does(generator):
    stream = generator.stream(SLOTS, 0.2, seed=2, instrument={"guitar": "jazz-guitar"})
    list(stream)
    out = generator.generate(SLOTS, 0.2, seed=2, instrument={"guitar": "jazz-guitar"})
    assert torch.equal(stream.output.codes, out.codes)
    assert stream.output.meta["objects"] == out.meta["objects"]


@pytest.mark.parametrize("extra, expected", [
    (["--instrument", "bass=flute"], "flute is an instrument of the other family, not bass"),
    (["--instrument", "guitar=nylon"], "unknown instrument 'nylon'; guitar instruments: "
                                       "nylon-guitar, steel-guitar"),
    (["--instrument", "guitar=guitar-harmonics"], "never heard guitar-harmonics in training"),
    (["--instrument", "piano=acoustic-grand-piano"], "'piano' is not among --slots"),
    (["--instrument", "guitar"], "use SLOT=NAME"),
    (["--timbre", "guitar=missing.wav"], "--timbre guitar=missing.wav: cannot read"),
])
def test_object_mistakes_are_one_line(checkpoints, tmp_path, capsys, extra, expected):
    out = tmp_path / "never"
    assert main(["--checkpoint", str(checkpoints["objects"]), "--slots", SLOTS, "--device",
                 "cpu", "--threads", "1", "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not out.exists()


@pytest.mark.parametrize("extra", [["--instrument", "guitar=nylon-guitar"],
                                   ["--timbre", "guitar=clip.wav"]])
def test_a_model_without_objects_refuses_instrument_and_timbre(checkpoints, capsys, extra):
    assert main(["--checkpoint", str(checkpoints["plain"]), "--slots", SLOTS, "--device", "cpu",
                 "--threads", "1", *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "has no instrument objects" in err
    with pytest.raises(UserError, match="has no instrument objects"):
        StemGenerator.from_pretrained(checkpoints["plain"], device="cpu", threads=1).generate(
            SLOTS, 0.1, instrument={"guitar": "nylon-guitar"})


def test_list_instruments_prints_the_names_by_family(capsys):
    assert main(["--list-instruments"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0] == "drums:"
    for family, names in by_family().items():
        assert f"{family}:" in text and all(name in text for name in names)


# -- training -------------------------------------------------------------------------------------
def test_a_tiny_objects_model_trains_and_round_trips_through_its_checkpoint(tmp_path):
    labels = [["standard-kit", "acoustic-bass", "acoustic-grand-piano"],
              ["jazz-kit", "finger-bass", "harpsichord"], ["unknown", "unknown", "unknown"]]
    cache = make_cache(tmp_path / "cache", n_songs=6, frames=80, objects=labels)
    out = tmp_path / "run"
    assert ok(run_script("train", "--config", str(ROOT / "configs" / "tiny-test.yaml"),
                         f"data.cache={cache}", f"out={out}", "model.objects=true", "steps=6",
                         "eval_every=6", "save_every=6"))
    model = MultiStreamTransformer.from_pretrained(out)
    assert model.config.objects and model.instrument_objects is not None
    trained = model.training_info["objects"]
    assert set(trained) == {"drums", "bass", "piano"}
    assert set(trained["drums"]) <= {"standard-kit", "jazz-kit"}
    assert model.training_info["reference_frames"] == 16
    # the loop fed ids and clips: their weights moved from where training started them
    torch.manual_seed(0)  # what train.py seeds (cfg.seed) before it builds the model
    start = MultiStreamTransformer(model.config).instrument_objects
    moved = model.instrument_objects
    for name, used in (("standard-kit", True), ("harpsichord", True), ("violin", False)):
        row = object_id(name)  # a row no song is labelled with: touched by weight decay alone
        assert torch.allclose(moved.ids.weight[row], start.ids.weight[row], rtol=0.01) != used
    assert not torch.equal(moved.timbre.out.weight, start.timbre.out.weight)
    seq, instrument = random_inputs(B=1, K=3)
    objects = Objects(torch.tensor([[1, 33, 7]]), torch.randint(0, 16, (1, 3, 2, 16)),
                      torch.ones(1, 3, 16, dtype=torch.bool))
    model.save_pretrained(tmp_path / "copy")
    copy = MultiStreamTransformer.from_pretrained(tmp_path / "copy")
    assert torch.equal(model(seq, instrument, objects=objects),
                       copy(seq, instrument, objects=objects))


@pytest.mark.slow
def test_a_run_started_before_objects_existed_resumes(tmp_path):
    cache = make_cache(tmp_path / "cache", n_songs=6, frames=80)
    out = tmp_path / "run"
    args = ["--config", str(ROOT / "configs" / "tiny-test.yaml"), f"data.cache={cache}",
            f"out={out}", "steps=4", "save_every=2", "eval_every=4"]
    assert ok(run_script("train", *args, "stop_after=2"))
    saved = out / "train_config.json"
    config = json.loads(saved.read_text())
    for key in ("objects", "num_objects", "timbre_layers"):  # what such a run stored
        config["model"].pop(key)
    for key in ("reference_frames", "object_dropout", "reference_dropout"):
        config["data"].pop(key)
    saved.write_text(json.dumps(config))
    assert ok(run_script("train", *args))
    assert not MultiStreamTransformer.from_pretrained(out).config.objects
