"""Relatedness of two domains (paper eq. 8): R(D_S, D_T) = KL(H_u(D_S) || H_u(D_T)).

H_u is the histogram of the number of interactions per user. Both domains use the same bins:
one bin per count 1..20, then doubling bins (21-32, 33-64, 65-128, ...) up to the largest count of
either domain. Each bin gets a pseudo-count of 1 before normalising (Laplace smoothing), so an empty
bin never gives an infinite divergence. Natural logarithm.
"""

import numpy as np


def histogram_bins(max_count):
    edges = list(range(1, 22))  # [1,2), [2,3), ..., [20,21)
    upper = 32
    while edges[-1] <= max_count:
        edges.append(upper + 1)
        upper *= 2
    return np.asarray(edges)


def user_counts(*datasets):
    """Interactions per user of one or several RecBole Datasets of one domain (e.g. its train, valid and
    test parts), for users with at least one interaction."""
    uid = np.concatenate([np.asarray(d.inter_feat[d.uid_field], dtype=np.int64) for d in datasets])
    counts = np.bincount(uid)
    return counts[counts > 0]


def id_tokens(dataset):
    """{token field: tokens in RecBole's internal id order ([PAD] first)} for the user and item id fields and
    every other token (or token sequence) field: embedding tables only mean something in their id space."""
    return {str(f): [str(t) for t in tokens] for f, tokens in dataset.field2id_token.items()}


def kl_relatedness(source_counts, target_counts):
    """KL(H_u(source) || H_u(target)) on shared bins, Laplace-smoothed."""
    source_counts, target_counts = np.asarray(source_counts), np.asarray(target_counts)
    edges = histogram_bins(int(max(source_counts.max(), target_counts.max())))
    p = np.histogram(source_counts, bins=edges)[0] + 1.0
    q = np.histogram(target_counts, bins=edges)[0] + 1.0
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))
