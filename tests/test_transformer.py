import json

import pytest
import torch
import torch.nn.functional as F

from stemcodec.config import ConfigError, from_dict
from stemcodec.model import (
    ModelConfig,
    MultiStreamTransformer,
    SamplingConfig,
    build_delay,
    generate_codes,
)
from stemcodec.model.sampling import sample_logits
from stemcodec.model.transformer import SlotAttention, rotary_angles

Q, CARD = 2, 16


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # tiny matrices gain nothing from threads, and on a busy machine two OpenMP threads
    # spin-waiting on each other make the overfit test ~50x slower
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny(**overrides) -> MultiStreamTransformer:
    torch.manual_seed(0)
    cfg = ModelConfig(**{"num_codebooks": Q, "cardinality": CARD, "dim": 32, "num_layers": 2,
                         "num_heads": 2, "max_frames": 64, **overrides})
    return MultiStreamTransformer(cfg).eval()


def batch(B: int = 2, K: int = 3, T: int = 10, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(0, CARD + 1, (B, K, Q, T), generator=g)
    instrument = torch.stack([torch.randperm(6, generator=g)[:K] for _ in range(B)])
    return seq, instrument


def close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return torch.allclose(a, b, atol=1e-5, rtol=0)


def test_logits_have_one_head_per_codebook_and_no_special_token():
    model = tiny()
    seq, instrument = batch()
    assert model(seq, instrument).shape == (2, 3, Q, 10, CARD)


@torch.no_grad()
def test_changing_a_future_frame_changes_no_earlier_logits_in_any_slot():
    model = tiny()
    seq, instrument = batch()
    t = 6
    changed = seq.clone()
    changed[0, 1, :, t] = (changed[0, 1, :, t] + 1) % (CARD + 1)
    a, b = model(seq, instrument), model(changed, instrument)
    assert close(a[..., :t, :], b[..., :t, :])
    assert not close(a[0, 1, :, t], b[0, 1, :, t])  # the changed position itself does react


@torch.no_grad()
def test_no_slot_sees_another_slots_next_token():
    model = tiny()
    seq, instrument = batch()
    for t in range(seq.shape[-1] - 1):
        changed = seq.clone()
        changed[:, 2, :, t + 1] = (changed[:, 2, :, t + 1] + 3) % (CARD + 1)
        a, b = model(seq, instrument), model(changed, instrument)
        assert close(a[:, :2, :, : t + 1], b[:, :2, :, : t + 1])
        # ... but once it is in the past, the other slots do hear it
        assert not close(a[:, :2, :, t + 1], b[:, :2, :, t + 1])


@torch.no_grad()
def test_permuting_slots_permutes_outputs():
    model = tiny()
    seq, instrument = batch()
    present = torch.tensor([[True, True, False], [True, True, True]])
    perm = torch.tensor([2, 0, 1])
    out = model(seq, instrument, present)
    permuted = model(seq[:, perm], instrument[:, perm], present[:, perm])
    assert close(out[:, perm], permuted)


@torch.no_grad()
def test_a_slot_is_identified_by_its_instrument():
    model = tiny()
    seq, instrument = batch()
    swapped = instrument.clone()
    swapped[:, 0] = (instrument[:, 0] + 1) % 6
    assert not close(model(seq, instrument)[:, 0], model(seq, swapped)[:, 0])


@torch.no_grad()
def test_absent_slots_do_not_affect_present_ones():
    model = tiny()
    seq, instrument = batch(K=3)
    present = torch.tensor([[True, False, True], [True, False, True]])
    other = seq.clone()
    other[:, 1] = torch.randint(0, CARD + 1, other[:, 1].shape)
    other_instrument = instrument.clone()
    other_instrument[:, 1] = (instrument[:, 1] + 1) % 6
    a = model(seq, instrument, present)
    b = model(other, other_instrument, present)
    assert close(a[:, [0, 2]], b[:, [0, 2]])
    # and the same as running without the absent slot at all
    alone = model(seq[:, [0, 2]], instrument[:, [0, 2]])
    assert close(a[:, [0, 2]], alone)


@torch.no_grad()
def test_a_batch_item_with_no_present_slot_gives_finite_logits():
    model = tiny()
    seq, instrument = batch()
    present = torch.tensor([[False, False, False], [True, True, True]])
    assert torch.isfinite(model(seq, instrument, present)).all()


@torch.no_grad()
@pytest.mark.parametrize("slot_attention", [False, True])
def test_slot_attention_switch_decides_whether_slots_interact(slot_attention):
    model = tiny(slot_attention=slot_attention)
    seq, instrument = batch()
    changed = seq.clone()
    changed[:, 1] = (changed[:, 1] + 5) % (CARD + 1)
    a, b = model(seq, instrument), model(changed, instrument)
    assert close(a[:, 0], b[:, 0]) == (not slot_attention)
    assert close(a[:, 2], b[:, 2]) == (not slot_attention)


@torch.no_grad()
def test_cached_incremental_forward_matches_full_forward():
    model = tiny()
    seq, instrument = batch(T=12)
    present = torch.tensor([[True, True, False], [True, True, True]])
    full = model(seq, instrument, present)
    cache = model.new_cache(2, 3, max_frames=16)
    pieces, start = [], 0
    for size in [5, 1, 1, 3, 2]:  # a prompt, then single steps, then chunks
        pieces.append(model(seq[..., start:start + size], instrument, present,
                            cache=cache, start=start))
        start += size
    assert close(torch.cat(pieces, dim=3), full)


@torch.no_grad()
def test_greedy_decoding_with_cache_matches_recomputing_the_prefix():
    model = tiny()
    B, K, steps = 2, 3, 10
    _, instrument = batch(B=B, K=K)
    prompt = torch.full((B, K, Q, 1), CARD)  # the all-special start column

    def decode(use_cache: bool) -> tuple[torch.Tensor, list[torch.Tensor]]:
        seq, seen = prompt.clone(), []
        cache = model.new_cache(B, K, max_frames=steps + 1) if use_cache else None
        for p in range(steps):
            if use_cache:
                logits = model(seq[..., p:p + 1], instrument, cache=cache, start=p)[..., -1, :]
            else:
                logits = model(seq, instrument)[..., -1, :]  # (B, K, Q, card)
            seen.append(logits)
            seq = torch.cat([seq, logits.argmax(-1)[..., None]], dim=-1)
        return seq, seen

    cached, cached_logits = decode(use_cache=True)
    full, full_logits = decode(use_cache=False)
    assert torch.equal(cached, full)
    for a, b in zip(cached_logits, full_logits):
        assert close(a, b)


def test_cache_refuses_positions_past_its_end_and_the_wrong_batch():
    model = tiny()
    seq, instrument = batch(T=4)
    with pytest.raises(ValueError, match="exceed"):
        model(seq, instrument, cache=model.new_cache(2, 3, max_frames=6), start=3)
    with pytest.raises(ValueError, match="streams"):
        model(seq, instrument, cache=model.new_cache(1, 3, max_frames=6))


def test_out_of_range_tokens_slots_and_instruments_are_refused():
    model = tiny(max_slots=3)
    seq, instrument = batch(K=3)
    with pytest.raises(ValueError, match="outside"):
        model(seq.clone().fill_(CARD + 1), instrument)
    with pytest.raises(ValueError, match="instrument ids"):
        model(seq, instrument.clone().fill_(6))
    more, more_instrument = batch(K=4)
    with pytest.raises(ValueError, match="max_slots"):
        model(more, more_instrument)


def test_a_training_step_reads_no_value_back_from_the_device():
    """The id checks cost an accelerator no host sync: on the meta device (shapes without
    values, where reading one back fails) a training forward and backward run through."""
    model = tiny().to("meta").train()
    seq, instrument = (t.to("meta") for t in batch())
    logits = model(seq, instrument, torch.ones(2, 3, dtype=torch.bool, device="meta"))
    total, _ = model.loss(logits[..., :-1, :], seq[..., 1:], torch.ones_like(seq[..., 1:]).bool())
    total.backward()
    assert logits.shape == (2, 3, Q, 10, CARD)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_cuda_forward_never_synchronises():
    model = tiny().cuda().train()
    seq, instrument = (t.cuda() for t in batch())
    model(seq, instrument)  # warm-up: first calls may allocate (and sync)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        model(seq, instrument).float().mean().backward()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="num_heads"):
        ModelConfig(dim=30, num_heads=4)
    with pytest.raises(ConfigError, match="mode"):
        from_dict(ModelConfig, {"mode": "chorus"})
    with pytest.raises(ConfigError, match="vocabulary"):
        ModelConfig(vocabulary=["drums", "drums"])


def test_default_config_builds_a_mini_model():
    model = MultiStreamTransformer(ModelConfig())
    assert model.config.instruments == ["drums", "bass", "other", "vocals", "guitar", "piano"]
    assert 1_000_000 < model.num_parameters() < 20_000_000


def test_tiny_model_overfits_a_fixed_batch():
    model = tiny().train()
    g = torch.Generator().manual_seed(0)
    codes = torch.randint(0, CARD, (2, 2, Q, 12), generator=g)
    seq = build_delay(codes, CARD)
    inputs, targets = seq[..., :-1], seq[..., 1:]
    mask = targets != CARD
    instrument = torch.tensor([[0, 1], [2, 3]])
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(100):
        loss, per_codebook = model.loss(model(inputs, instrument), targets, mask)
        losses.append(loss.item())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert losses[0] > 2.0  # about log(16) at the start
    assert losses[-1] < 0.1
    assert per_codebook.shape == (Q,)


def test_loss_ignores_masked_positions_holding_the_special_token():
    model = tiny()
    logits = torch.randn(1, 1, Q, 5, CARD)
    targets = torch.full((1, 1, Q, 5), CARD)
    targets[..., 2] = 3
    mask = targets != CARD
    total, per_codebook = model.loss(logits, targets, mask)
    expected = torch.nn.functional.cross_entropy(logits[0, 0, :, 2], targets[0, 0, :, 2])
    assert torch.allclose(total, expected)
    assert torch.allclose(per_codebook.mean(), expected)


@torch.no_grad()
def test_save_load_round_trip_gives_identical_logits_and_keeps_codec_info(tmp_path):
    model = tiny(slot_attention=False, vocabulary=["drums", "piano"])
    model.codec_info = {"name": "debug", "id": "abc"}
    model.save_pretrained(tmp_path)
    loaded = MultiStreamTransformer.from_pretrained(tmp_path)
    assert loaded.config == model.config
    assert loaded.codec_info == {"name": "debug", "id": "abc"}
    assert not loaded.training
    seq, _ = batch(K=2)
    instrument = torch.tensor([[0, 1], [1, 0]])
    assert torch.equal(loaded(seq, instrument), model(seq, instrument))
    assert json.loads((tmp_path / "config.json").read_text())["vocabulary"] == ["drums", "piano"]


@torch.no_grad()
def test_mix_mode_runs_one_stream():
    model = tiny(mode="mix")
    assert model.config.instruments == ["mix"]
    assert model.instrument.num_embeddings == 1
    seq, _ = batch(B=2, K=1)
    logits = model(seq, torch.zeros(2, 1, dtype=torch.long))
    assert logits.shape == (2, 1, Q, 10, CARD)
    two, _ = batch(B=2, K=2)
    with pytest.raises(ValueError, match="mix"):
        model(two, torch.zeros(2, 2, dtype=torch.long))


# -- the generation step: fast path, same results ------------------------------------------
@torch.no_grad()
def test_a_cached_step_runs_on_one_thread_and_restores_the_thread_setting(monkeypatch):
    model = tiny()
    seq, instrument = batch(T=4)
    cache = model.new_cache(2, 3, max_frames=4)
    threads = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda *a, **kw: threads.append(torch.get_num_threads()) or sdpa(*a, **kw))
    torch.set_num_threads(2)
    try:
        model(seq[..., :3], instrument, cache=cache)  # a prompt (small here too)
        model(seq[..., 3:], instrument, cache=cache, start=3)  # a step
        assert set(threads) == {1}
        assert torch.get_num_threads() == 2
        threads.clear()
        model(seq, instrument)  # no cache: the threads as set
        assert set(threads) == {2}
    finally:
        torch.set_num_threads(1)


def count_attention_calls(monkeypatch) -> list[int]:
    """Patch SDPA to record the number of keys of each call."""
    keys: list[int] = []
    sdpa = F.scaled_dot_product_attention
    monkeypatch.setattr(F, "scaled_dot_product_attention",
                        lambda q, k, v, **kw: keys.append(k.shape[-2]) or sdpa(q, k, v, **kw))
    return keys


@torch.no_grad()
@pytest.mark.parametrize("mode", ["stems", "mix"])
def test_a_lone_slot_skips_slot_attention_and_gives_the_same_logits(monkeypatch, mode):
    """With one slot, slot attention's softmax has one key (weight 1): the shortcut (the
    value and output projections alone) gives the generic path's logits, full and cached."""
    from stemcodec.model.transformer import SlotAttention
    model = tiny(mode=mode)
    seq, instrument = batch(B=2, K=1, T=8)
    if mode == "mix":
        instrument = torch.zeros_like(instrument)  # the one instrument, "mix"
    present = torch.ones(2, 1, dtype=torch.bool)

    def logits() -> tuple[torch.Tensor, torch.Tensor]:
        cache = model.new_cache(2, 1, max_frames=8)
        model(seq[..., :7], instrument, present, cache=cache)  # a prompt, then a step
        return model(seq, instrument, present), model(seq[..., 7:], instrument, present,
                                                      cache=cache, start=7)

    monkeypatch.setattr(SlotAttention, "lone_slot_shortcut", False)
    generic = logits()
    monkeypatch.setattr(SlotAttention, "lone_slot_shortcut", True)
    keys = count_attention_calls(monkeypatch)
    fast = logits()
    assert close(fast[0], generic[0]) and close(fast[1], generic[1])
    assert len(keys) == 3 * model.config.num_layers  # time attention only, in all 3 forwards
    assert 1 not in keys  # no slot attention over one key


@torch.no_grad()
def test_slot_attention_over_several_slots_or_in_training_is_not_skipped(monkeypatch):
    model = tiny()
    keys = count_attention_calls(monkeypatch)
    seq, instrument = batch(B=1, K=2, T=4)
    model(seq, instrument)
    assert keys.count(2) == model.config.num_layers  # slot attention over the 2 slots
    keys.clear()
    model.train()
    one, inst = batch(B=1, K=1, T=4)
    model(one, inst)
    assert keys.count(1) == model.config.num_layers  # one key, attended as in training


def test_a_lone_slot_trains_its_query_and_key_weights_as_before():
    """Training keeps the generic path: the query and key weights stay in the graph (a
    distributed trainer refuses parameters that get no gradient)."""
    model = tiny().train()
    seq, instrument = batch(B=2, K=1, T=6)
    model(seq, instrument).sum().backward()
    assert all(b.slot.qkv.weight.grad is not None for b in model.blocks)


def test_a_lone_slot_generates_the_same_tokens_with_the_shortcut(monkeypatch):
    from stemcodec.model.transformer import SlotAttention
    model = tiny()
    instrument = torch.tensor([[4]])

    def run() -> torch.Tensor:
        return generate_codes(model, instrument, 30, SamplingConfig(temperature=1.0, top_k=8),
                              generator=torch.Generator().manual_seed(11))

    monkeypatch.setattr(SlotAttention, "lone_slot_shortcut", False)
    generic = run()
    monkeypatch.setattr(SlotAttention, "lone_slot_shortcut", True)
    assert torch.equal(run(), generic)


def test_rotary_table_gives_each_position_its_angles_even_past_max_frames():
    model = tiny()  # max_frames 64
    for start, T in [(0, 5), (3, 1), (60, 10), (0, 100)]:
        cos, sin = model.rotary(start, T)
        ref_cos, ref_sin = rotary_angles(torch.arange(start, start + T), model.inv_freq)
        assert cos.shape == (T, model.config.head_dim)
        assert torch.allclose(cos, ref_cos, atol=1e-6) and torch.allclose(sin, ref_sin, atol=1e-6)


def test_a_model_first_run_under_inference_mode_can_still_be_trained():
    model = tiny()
    seq, instrument = batch()
    with torch.inference_mode():  # the rotary table is made here
        model(seq, instrument, cache=model.new_cache(2, 3, max_frames=10))
    model.train()
    model(seq, instrument).sum().backward()
    assert model.tokens.weight.grad is not None


def test_sampled_generation_with_cache_matches_recompute_for_the_same_seed():
    model = tiny()
    instrument = torch.tensor([[0, 3, 5]])

    def run(use_cache: bool) -> torch.Tensor:
        return generate_codes(model, instrument, 20, SamplingConfig(temperature=1.0, top_k=8),
                              generator=torch.Generator().manual_seed(7), use_cache=use_cache)

    assert torch.equal(run(True), run(False))


# -- sampling -------------------------------------------------------------------------------
PROBS = torch.tensor([0.5, 0.3, 0.15, 0.05])


def draw(cfg: SamplingConfig, n: int = 20000, seed: int = 0) -> torch.Tensor:
    logits = PROBS.log().expand(n // 4, 2, 2, 4)  # [B, K, Q, card]
    picks = sample_logits(logits, cfg, torch.Generator().manual_seed(seed))
    assert picks.shape == (n // 4, 2, 2)
    return torch.bincount(picks.flatten(), minlength=4) / n


def test_sampling_draws_each_token_with_its_probability():
    assert torch.allclose(draw(SamplingConfig(temperature=1.0, top_k=0)), PROBS, atol=0.015)


def test_top_k_and_top_p_renormalise_over_the_tokens_they_keep():
    kept = torch.tensor([0.5, 0.3, 0.0, 0.0]) / 0.8
    top_k = draw(SamplingConfig(temperature=1.0, top_k=2))
    assert torch.allclose(top_k, kept, atol=0.015) and top_k[2:].sum() == 0
    top_p = draw(SamplingConfig(temperature=1.0, top_k=0, top_p=0.6))  # 0.5 < 0.6 <= 0.8
    assert torch.allclose(top_p, kept, atol=0.015) and top_p[2:].sum() == 0


def test_sampling_repeats_with_the_seed_and_greedy_takes_the_argmax():
    cfg = SamplingConfig(temperature=1.0, top_k=3)
    assert torch.equal(draw(cfg, seed=1), draw(cfg, seed=1))
    assert not torch.equal(draw(cfg, seed=1), draw(cfg, seed=2))
    logits = torch.randn(3, 2, 16)
    assert torch.equal(sample_logits(logits, SamplingConfig(temperature=0)), logits.argmax(-1))


def test_settings_per_codebook_apply_to_their_own_codebook():
    from stemcodec.model.sampling import sample_codebooks
    logits = PROBS.log().expand(5000, 2, 2, 4)  # [B, K, Q=2, card]
    cfg = SamplingConfig(temperature=[0.0, 1.0], top_k=[0, 2])
    picks = sample_codebooks(logits, cfg, torch.Generator().manual_seed(0))
    assert picks.shape == (5000, 2, 2)
    assert (picks[..., 0] == 0).all()  # greedy on the first codebook
    second = torch.bincount(picks[..., 1].flatten(), minlength=4) / picks[..., 1].numel()
    assert torch.allclose(second, torch.tensor([0.625, 0.375, 0.0, 0.0]), atol=0.02)
    with pytest.raises(ValueError, match="3 values for 2 codebooks"):
        sample_codebooks(logits, SamplingConfig(temperature=[1.0, 1.0, 1.0]))


def seeds(seed: int, rows: int = 3) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(seed * rows + b) for b in range(rows)]


PER_CODEBOOK = [
    SamplingConfig(temperature=[1.0, 1.0, 1.0, 1.0]),
    SamplingConfig(temperature=[0.0, 0.7, 1.0, 1.3], top_k=[0, 250, 50, 5]),
    SamplingConfig(temperature=0.9, top_k=[250, 2000, 1, 0], top_p=[0.9, 0.0, 0.5, 1.0]),
    SamplingConfig(temperature=[1.0, 0.0, 0.8, 0.0], top_k=40, top_p=[0.0, 0.3, 0.95, 0.6]),
    SamplingConfig(temperature=[0.0, 0.0, 0.0, 0.0], top_k=[1, 2, 3, 4]),
]


@pytest.mark.parametrize("cfg", PER_CODEBOOK)
def test_settings_per_codebook_sampled_in_one_pass_give_the_tokens_of_one_at_a_time(cfg):
    from stemcodec.model.sampling import (
        CodebookSettings,
        _sample_each_codebook,
        sample_per_codebook,
    )
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(3, 2, 4, 1024, generator=g) * 4  # [B, K, Q, card]
    per_q = cfg.per_codebook(4)
    settings = CodebookSettings.of(per_q, 1024)
    for seed in range(4):
        one_at_a_time = _sample_each_codebook(logits, per_q, seeds(seed))
        assert torch.equal(sample_per_codebook(logits, settings, seeds(seed)), one_at_a_time)


def test_settings_per_codebook_generate_the_same_tokens_in_one_pass(monkeypatch):
    from stemcodec.model import sampling
    torch.manual_seed(0)
    model = MultiStreamTransformer(ModelConfig(num_codebooks=4, cardinality=64, dim=32,
                                               num_layers=1, num_heads=2, max_frames=64)).eval()
    inst = torch.tensor([[0, 1], [2, 3]])

    def run(cfg):
        return generate_codes(model, inst, 20, cfg,
                              generator=[torch.Generator().manual_seed(s) for s in (3, 4)])
    for cfg in PER_CODEBOOK:
        monkeypatch.setattr(sampling, "FUSE_CODEBOOKS", False)
        one_at_a_time = run(cfg)
        monkeypatch.setattr(sampling, "FUSE_CODEBOOKS", True)
        assert torch.equal(run(cfg), one_at_a_time)


def test_per_codebook_settings_equal_to_the_single_value_give_the_same_tokens():
    torch.manual_seed(0)
    model = MultiStreamTransformer(ModelConfig(num_codebooks=4, cardinality=32, dim=32,
                                               num_layers=1, num_heads=2, max_frames=64)).eval()
    inst = torch.tensor([[0, 1]])

    def run(cfg, seed=3):
        return generate_codes(model, inst, 12, cfg, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(run(SamplingConfig(temperature=[0.0] * 4)), run(SamplingConfig(temperature=0)))
    assert torch.equal(run(SamplingConfig(temperature=[1.0] * 4, top_k=(8, 8, 8, 8))),
                       run(SamplingConfig(temperature=1.0, top_k=8)))
    mixed = run(SamplingConfig(temperature=[0.0, 1.0, 1.0, 1.0]))
    assert not torch.equal(mixed, run(SamplingConfig(temperature=1.0)))
    with pytest.raises(ValueError, match="2 values for 4 codebooks"):
        run(SamplingConfig(top_p=[0.5, 0.5]))


@torch.no_grad()
@pytest.mark.parametrize("light", [{"slot_attention_every": 2}, {"slot_attention_dim": 16}])
def test_a_lighter_slot_attention_still_mixes_slots_causally_and_symmetrically(light):
    """Slot attention in every other layer, or narrower: fewer weights, and still what slot
    attention is (slots hear each other, the future stays hidden, slots are interchangeable,
    absent slots are hidden, the KV cache agrees)."""
    full, model = tiny(num_layers=4), tiny(num_layers=4, **light)
    assert model.num_parameters() < full.num_parameters()
    if "slot_attention_every" in light:
        assert [b.slot_attention for b in model.blocks] == [False, True, False, True]
    else:
        assert model.blocks[0].slot.qkv.weight.shape == (48, 32)
    seq, instrument = batch(T=12)
    changed = seq.clone()
    changed[:, 1] = (changed[:, 1] + 5) % (CARD + 1)
    a, b = model(seq, instrument), model(changed, instrument)
    assert not close(a[:, 0], b[:, 0])  # slot 0 hears slot 1
    future = seq.clone()
    future[:, 1, :, 8:] = (future[:, 1, :, 8:] + 3) % (CARD + 1)
    assert close(a[..., :8, :], model(future, instrument)[..., :8, :])
    perm = torch.tensor([2, 0, 1])
    assert close(a[:, perm], model(seq[:, perm], instrument[:, perm]))
    present = torch.tensor([[True, True, False], [True, True, True]])
    hidden = seq.clone()
    hidden[0, 2] = (hidden[0, 2] + 7) % (CARD + 1)
    out = model(seq, instrument, present)
    assert close(out[0, :2], model(hidden, instrument, present)[0, :2])
    cache = model.new_cache(2, 3, max_frames=16)
    pieces = [model(seq[..., s:s + n], instrument, present, cache=cache, start=s)
              for s, n in ((0, 5), (5, 1), (6, 6))]
    assert close(torch.cat(pieces, dim=3), out)
    lone = model(seq[:, :1], instrument[:, :1])  # the lone-slot shortcut, narrow or sparse
    SlotAttention.lone_slot_shortcut = False
    try:
        assert close(lone, model(seq[:, :1], instrument[:, :1]))
    finally:
        SlotAttention.lone_slot_shortcut = True


def test_a_lighter_slot_attention_is_checked_when_configured():
    with pytest.raises(ConfigError, match="model.slot_attention_every must be 1 to model.num_layers"):
        tiny(slot_attention_every=3)
    with pytest.raises(ConfigError, match="model.slot_attention_dim=15 must be 0"):
        tiny(slot_attention_dim=15)
