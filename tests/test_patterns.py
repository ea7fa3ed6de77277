import pytest
import torch

from stemcodec.model.patterns import build_delay, revert_delay, valid_mask

SPECIAL = 1024


@pytest.mark.parametrize("Q", [1, 2, 4, 8])
def test_delay_round_trip_is_exact(Q):
    codes = torch.randint(0, SPECIAL, (2, 3, Q, 11))
    seq = build_delay(codes, SPECIAL)
    assert seq.shape == (2, 3, Q, 11 + Q)
    assert torch.equal(revert_delay(seq, Q), codes)


@pytest.mark.parametrize("Q", [1, 2, 4, 8])
def test_delay_puts_special_exactly_outside_the_valid_mask(Q):
    T = 7
    codes = torch.randint(0, SPECIAL, (Q, T))
    seq = build_delay(codes, SPECIAL)
    valid = valid_mask(Q, T)
    assert (seq[:, 0] == SPECIAL).all()  # the start column
    assert (seq[~valid] == SPECIAL).all()
    assert (seq[valid] != SPECIAL).all()
    for q in range(Q):
        assert torch.equal(seq[q, 1 + q: 1 + q + T], codes[q])


def test_delay_matches_the_docstring_diagram():
    codes = torch.arange(12).view(3, 4)  # a0..a3, b0..b3, c0..c3
    s = -1
    expected = torch.tensor([[s, 0, 1, 2, 3, s, s],
                             [s, s, 4, 5, 6, 7, s],
                             [s, s, s, 8, 9, 10, 11]])
    assert torch.equal(build_delay(codes, s), expected)


def test_delay_works_without_leading_dims_and_leaves_input_alone():
    codes = torch.randint(0, SPECIAL, (4, 5))
    before = codes.clone()
    seq = build_delay(codes, SPECIAL)
    seq[0, 1] = 7  # the result is a new tensor
    assert torch.equal(codes, before)
    back = revert_delay(seq, 4)
    back[:] = 0
    assert seq[0, 1] == 7


def test_revert_rejects_wrong_codebook_count():
    with pytest.raises(ValueError, match="codebooks"):
        revert_delay(torch.zeros(2, 3, 9, dtype=torch.long), 4)


def test_single_codebook_has_no_delay_only_the_start_column():
    codes = torch.randint(0, SPECIAL, (2, 3, 1, 6))
    seq = build_delay(codes, SPECIAL)
    assert (seq[..., 0] == SPECIAL).all()
    assert torch.equal(seq[..., 1:], codes)


def test_valid_mask_counts_every_code_once():
    for Q, T in [(1, 1), (4, 3), (8, 20)]:
        assert valid_mask(Q, T).sum() == Q * T
