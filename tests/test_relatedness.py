"""KL relatedness of two domains (paper eq. 8), KL(H_u(source) || H_u(target)) of the interactions-per-user histograms:
values computed by hand for known count vectors."""

import math

import numpy as np
import pytest

from recbole_transfer.data import kl_relatedness


def test_kl_relatedness_of_known_count_vectors():
    # one bin per count 1..20, a pseudo-count of 1 in each: [1, 1, 2] -> (3, 2, 1 x 18) / 23, [1, 2, 2] -> (2, 3, 1 x 18) / 23
    close = kl_relatedness([1, 1, 2], [1, 2, 2])
    assert close == pytest.approx((3 * math.log(3 / 2) + 2 * math.log(2 / 3)) / 23, rel=1e-12)  # = ln(1.5) / 23
    # [5, 5, 5] -> (1, 1, 1, 1, 4, 1 x 15) / 23: KL = (3 ln 3 + 2 ln 2 + 1 ln(1/4)) / 23 = 3 ln 3 / 23
    far = kl_relatedness([1, 1, 2], [5, 5, 5])
    assert far == pytest.approx(3 * math.log(3) / 23, rel=1e-12)
    assert far > 8 * close  # more different domains: a larger divergence
    # KL(source || target), not the reverse: (1 ln(1/3) + 1 ln(1/2) + 4 ln 4) / 23
    assert kl_relatedness([5, 5, 5], [1, 1, 2]) == pytest.approx((7 * math.log(2) - math.log(3)) / 23, rel=1e-12)
    for counts in ([1, 1, 2], [3, 7, 7, 40, 500]):
        assert kl_relatedness(counts, counts) == 0.0  # identical domains
    assert kl_relatedness(np.array([4, 4, 6]), np.array([6, 4, 4])) == 0.0  # the same histogram, other users


def test_counts_above_20_share_doubling_bins():
    assert kl_relatedness([21], [32]) == 0.0  # one bin 21-32
    # 20 and 21: bins 20 and 21-32 of 21 bins (max 21): p = (1 x 19, 2, 1) / 22, q = (1 x 20, 2) / 22
    assert kl_relatedness([20], [21]) == pytest.approx(math.log(2) / 22, rel=1e-12)
    assert kl_relatedness([33], [64]) == 0.0 and kl_relatedness([32], [33]) > 0  # 33-64 is the next bin
    assert np.isfinite(kl_relatedness([1, 1], [500]))  # disjoint supports: finite (smoothed)
