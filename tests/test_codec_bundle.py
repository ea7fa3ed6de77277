"""The bundled mini codec across a change of tokens: the codec it replaces stays while a
bundled generator uses it, and goes (with the usual refusal) once none does."""

import json
from types import SimpleNamespace

import pytest
import torch

import stemcodec.checkpoint
from stemcodec.codec import DEBUG_CONFIG, build_encodec, bundle, load_codec, save_codec
from stemcodec.errors import UserError
from stemcodec.generation.generator import load_codec_for


def run_folder(path, seed):
    torch.manual_seed(seed)
    return save_codec(build_encodec(DEBUG_CONFIG), DEBUG_CONFIG, path)


def bundled_generator(assets, codec_id):
    folder = assets / "generator-mini"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"codec": {"name": "mini", "id": codec_id}}))


@pytest.fixture
def assets(tmp_path, monkeypatch):
    folder = tmp_path / "assets"
    folder.mkdir()
    monkeypatch.setattr(stemcodec.checkpoint, "ASSETS", folder)
    return folder


def test_a_new_codec_keeps_the_old_one_for_the_generators_until_they_move(tmp_path, assets):
    wav = 0.3 * torch.sin(2 * torch.pi * 220 * torch.arange(4800) / 24000)[None, None]
    old = bundle.install(run_folder(tmp_path / "old", 0), assets=assets)
    bundled_generator(assets, old.codec_id)
    new = bundle.install(run_folder(tmp_path / "new", 1), assets=assets)
    assert new.codec_id != old.codec_id
    assert load_codec("mini").codec_id == new.codec_id
    kept = assets / f"codec-mini-{old.codec_id.rsplit('-', 1)[-1]}"
    assert (kept / "model.safetensors").is_file()
    # a bundled generator on the old tokens decodes them with the old codec, as before
    codec = load_codec_for(SimpleNamespace(codec_info={"name": "mini", "id": old.codec_id}),
                           None, torch.device("cpu"))
    assert codec.codec_id == old.codec_id
    assert torch.equal(codec.encode(wav), old.encode(wav))
    assert load_codec("mini", codec_id=new.codec_id).codec_id == new.codec_id

    # the generators retrained on the new tokens: the old codec goes, and the old tokens
    # get the one-line refusal
    bundled_generator(assets, new.codec_id)
    assert bundle.prune(assets) == [kept.name]
    with pytest.raises(UserError, match=f"trained on codec {old.codec_id}"):
        load_codec_for(SimpleNamespace(codec_info={"name": "mini", "id": old.codec_id}),
                       None, torch.device("cpu"))


def test_installing_over_a_codec_no_generator_uses_keeps_no_copy(tmp_path, assets):
    bundle.install(run_folder(tmp_path / "a", 0), assets=assets)
    new = bundle.install(run_folder(tmp_path / "b", 1), assets=assets)
    assert sorted(p.name for p in assets.iterdir()) == ["codec-mini"]
    assert load_codec("mini").codec_id == new.codec_id


def test_a_decoder_trained_further_replaces_the_codec_under_the_same_id(tmp_path, assets):
    """The `decoder` stage: init_from the bundled codec, encoder and codebooks frozen, installed
    again in float16: the id stays, so bundled generators need no earlier copy."""
    first = bundle.install(run_folder(tmp_path / "first", 0), assets=assets)
    bundled_generator(assets, first.codec_id)
    state, cfg = stemcodec.checkpoint.load_pretrained(assets / "codec-mini")
    state = {k: v.float() + (0.01 if k.startswith("decoder.") and v.is_floating_point() else 0)
             for k, v in state.items()}
    stemcodec.checkpoint.save_pretrained(tmp_path / "tuned", state, cfg)
    tuned = bundle.install(tmp_path / "tuned", assets=assets)
    assert tuned.codec_id == first.codec_id
    assert sorted(p.name for p in assets.iterdir()) == ["codec-mini", "generator-mini"]
    probe = torch.randint(0, tuned.cardinality, (1, tuned.num_codebooks, 8))
    assert not torch.allclose(tuned.decode(probe), first.decode(probe))  # the new decoder
