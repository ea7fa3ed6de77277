import pytest
import torch

from stemcodec.model import build_delay, revert_delay, valid_mask


@pytest.mark.parametrize("Q", [1, 2, 4, 8])
def test_delay_round_trip_is_exact(Q):
    codes = torch.randint(0, 1024, (2, 3, Q, 17))
    original = codes.clone()
    seq = build_delay(codes, special=1024)
    assert seq.shape == (2, 3, Q, 17 + Q)
    assert torch.equal(revert_delay(seq, Q), codes)
    assert torch.equal(codes, original)  # the caller's tensor is untouched


def test_special_token_exactly_where_no_token_is():
    Q, T = 3, 4
    codes = torch.arange(Q * T).view(Q, T)
    seq = build_delay(codes, special=-1)
    expected = torch.tensor([
        [-1, 0, 1, 2, 3, -1, -1],
        [-1, -1, 4, 5, 6, 7, -1],
        [-1, -1, -1, 8, 9, 10, 11],
    ])
    assert torch.equal(seq, expected)
    assert torch.equal(valid_mask(Q, T), expected != -1)


def test_revert_refuses_wrong_shape():
    with pytest.raises(ValueError):
        revert_delay(torch.zeros(2, 5, dtype=torch.long), 3)
