"""Paired comparisons of arms scored on the same users and candidates.

Arms of one replicate share the protocol (split and candidates), so each evaluated user gives a paired
difference d_u = metric_u(arm) - metric_u(baseline). Replicates (seeds) are pooled per user: a user who is
evaluated in several seeds (leave-one-out tests every user in every seed; a fixed data_seed repeats the
same users and candidates) contributes the mean of her differences, so the bootstrap resamples users, the
independent unit, not (seed, user) rows. Targets are strata. :func:`paired_difference` returns the mean
difference with a bootstrap 95 % interval (users resampled within each stratum) and its standard error; a
macro difference over several targets is the mean of the targets' mean differences.
"""

from dataclasses import dataclass

import numpy as np

from .errors import TransferError

BOOTSTRAP = 2000
LEVEL = 0.95


@dataclass
class PairedDiff:
    """Mean paired difference, its bootstrap interval and standard error, over ``n`` paired users."""

    mean: float
    low: float
    high: float
    se: float
    n: int

    @property
    def excludes_zero(self):
        return self.low > 0 or self.high < 0

    def cell(self, digits=4):
        """``+0.0123 [+0.0040, +0.0207]*`` (``*``: the interval excludes 0)."""
        star = "*" if self.excludes_zero else ""
        return f"{self.mean:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]{star}"


def paired_se(differences):
    """Standard error of a mean paired difference: sd(d) / sqrt(n)."""
    d = np.asarray(differences, dtype=np.float64)
    return float(d.std(ddof=1) / np.sqrt(len(d))) if len(d) > 1 else float("inf")


def paired_difference(strata, n_boot=BOOTSTRAP, seed=0, level=LEVEL):
    """Mean over strata of each stratum's mean paired difference, with a percentile bootstrap interval
    (users resampled with replacement within each stratum, ``n_boot`` times, fixed ``seed``)."""
    strata = [np.asarray(s, dtype=np.float64) for s in strata if len(s)]
    if not strata:
        raise TransferError("paired difference: no paired users")
    rng = np.random.default_rng(seed)
    boot = np.zeros(n_boot)
    for d in strata:
        boot += d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    boot /= len(strata)
    tail = (1.0 - level) / 2.0
    mean = float(np.mean([d.mean() for d in strata]))
    se = float(np.sqrt(sum(paired_se(d) ** 2 for d in strata)) / len(strata))
    return PairedDiff(mean, float(np.quantile(boot, tail)), float(np.quantile(boot, 1.0 - tail)), se,
                      int(sum(len(d) for d in strata)))


def per_user(row, key):
    """(user ids, per-user values) of ``key`` ('test_hit@10', 'valid_ndcg@10', ...) of a result row, or
    None when the row has no per-user values of that metric."""
    phase, metric = key.split("_", 1)
    values = (row.get(f"{phase}_per_user") or {}).get(metric)
    if values is None:
        return None
    users = row.get(f"{phase}_users")
    users = np.arange(len(values)) if users is None else np.asarray(users, dtype=np.int64)
    return users, np.asarray(values, dtype=np.float64)


def paired_users(row, base, key):
    """(user ids, per-user differences ``row - base``) of ``key``; both rows must have been scored on the same
    data. None when either has no per-user values of ``key``."""
    if row.get("fingerprint") != base.get("fingerprint"):
        raise TransferError(
            f"{row.get('target')}: arms {row.get('arm')!r} and {base.get('arm')!r} (seed {row.get('seed')}) were scored on "
            f"different data (fingerprints {row.get('fingerprint')} vs {base.get('fingerprint')}); they cannot be paired"
        )
    a, b = per_user(row, key), per_user(base, key)
    if a is None or b is None:
        return None
    if not np.array_equal(a[0], b[0]):  # equal fingerprints should make this impossible: never pair by position
        raise TransferError(
            f"{row.get('target')}: arms {row.get('arm')!r} and {base.get('arm')!r} (seed {row.get('seed')}) list other "
            f"users for {key} ({len(a[0])} vs {len(b[0])} values, or another order); they cannot be paired"
        )
    return a[0], a[1] - b[1]


def paired_strata(strata):
    """:class:`PairedDiff` of ``strata``, each a list of (user ids, differences) pairs (one per seed, None
    where nothing paired): users averaged over their seeds within a stratum, strata weighed equally. None
    when nothing pairs at all."""
    means = [user_means([p for p in pairs if p is not None]) for pairs in strata if any(p is not None for p in pairs)]
    return paired_difference(means) if means else None


def user_means(pairs):
    """Per-user mean of the differences in ``pairs`` [(user ids, differences), ...] (one pair per seed): the
    unit a bootstrap over users resamples."""
    users = np.concatenate([u for u, _ in pairs])
    diffs = np.concatenate([d for _, d in pairs])
    unique, inverse = np.unique(users, return_inverse=True)
    return np.bincount(inverse, weights=diffs) / np.bincount(inverse)
