"""Paired statistics: two arms pair user by user only when they were scored on the same users, in the same order."""

import numpy as np
import pytest

from recbole_transfer.errors import TransferError
from recbole_transfer.stats import paired_users


def _row(arm, users, values, fingerprint="same-data"):
    return {"target": "tgt", "arm": arm, "seed": 1, "fingerprint": fingerprint, "test_users": list(users),
            "test_per_user": {"hit@10": list(values)}}


def test_paired_users_pairs_rows_listing_the_same_users_in_the_same_order():
    base = _row("none", [3, 1, 7, 5], [0.0, 1.0, 0.0, 1.0])
    arm = _row("config-1", [3, 1, 7, 5], [1.0, 1.0, 0.0, 0.0])
    users, differences = paired_users(arm, base, "test_hit@10")
    assert users.tolist() == [3, 1, 7, 5] and differences.tolist() == [1.0, 0.0, 0.0, -1.0]
    assert paired_users(_row("x", [3, 1, 7, 5], [0.0] * 4), _row("none", [3, 1, 7, 5], [0.0] * 4), "test_ndcg@10") is None


def test_paired_users_refuses_rows_with_equal_fingerprints_but_other_user_order():
    base = _row("none", [3, 1, 7, 5], [0.0, 1.0, 0.0, 1.0])
    # the same users and values as base, listed in another order: pairing by position would give 0 - 1 and 1 - 0
    reordered = _row("config-1", [1, 3, 7, 5], [1.0, 0.0, 0.0, 1.0])
    with pytest.raises(TransferError, match="list other users for test_hit@10"):
        paired_users(reordered, base, "test_hit@10")
    with pytest.raises(TransferError, match="list other users"):
        paired_users(base, reordered, "test_hit@10")
    with pytest.raises(TransferError, match="list other users"):  # as many users, another one among them
        paired_users(_row("config-1", [3, 1, 7, 6], [0.0] * 4), base, "test_hit@10")
    with pytest.raises(TransferError, match="list other users"):  # a user missing
        paired_users(_row("config-1", [3, 1, 7], [0.0] * 3), base, "test_hit@10")
    with pytest.raises(TransferError, match="different data"):  # other fingerprints: never paired
        paired_users(_row("config-1", [3, 1, 7, 5], [0.0] * 4, fingerprint="other"), base, "test_hit@10")
    assert np.array_equal(paired_users(_row("config-1", [3, 1, 7, 5], [0.0] * 4), base, "test_hit@10")[0], [3, 1, 7, 5])
