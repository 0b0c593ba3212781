"""The tables and the plot of periodic retraining, built from the rows of :func:`run_periodic` alone: the paper's
Table 1 shape (:func:`table1`, from :func:`summarise`), the per-period table and the per-period curves."""

import numpy as np

from ...report import best_baseline_table, markdown, mean_std
from .periods import PERIOD_METRICS
from .retraining import METHOD_LABELS, RETRAIN_METHODS


def _methods_in(rows):
    """Methods of ``rows`` in table order: the built-in ones first, then variants (e.g. an ablation's rows)."""
    names = list(dict.fromkeys(r["method"] for r in rows))
    return [m for m in RETRAIN_METHODS if m in names] + [m for m in names if m not in RETRAIN_METHODS]


def _label(method):
    return METHOD_LABELS.get(method, method)


def table_metrics(rows):
    """Table 1's columns: each metric at every K the rows hold, then the warm-user metrics at the largest K."""
    ks = sorted(int(key.split("@")[1]) for key in rows[0] if key.startswith(f"{PERIOD_METRICS[0]}@"))
    return [f"{m}@{k}" for m in PERIOD_METRICS for k in ks] + [f"warm_{m}@{ks[-1]}" for m in PERIOD_METRICS]


def summarise(rows, phase="test"):
    """{method: {metric: [value per seed]}}: each seed's metrics averaged over its ``phase`` periods."""
    by = {}
    for r in rows:
        if r["phase"] == phase:
            by.setdefault(r["method"], {}).setdefault(r.get("seed"), []).append(r)
    out, keys = {}, table_metrics(rows) + ["train_seconds"]
    for method, seeds in by.items():
        per_seed = {k: [np.nanmean([r[k] for r in rs]) for rs in seeds.values()] for k in keys}
        out[method] = {k: [float(x) for x in v] for k, v in per_seed.items()}  # one value per seed
    return out


def table1(rows, phase="test"):
    """The paper's Table 1 shape: one row per method, metrics averaged over the test periods (± std over seeds)."""
    summary, metrics = summarise(rows, phase), table_metrics(rows)
    head = ["method"] + [m.replace("warm_", "warm ") for m in metrics] + ["train s / period"]
    lines = []
    for method in [m for m in _methods_in(rows) if m in summary]:
        cells = [_label(method)]
        for key in metrics + ["train_seconds"]:
            cells.append(mean_std(summary[method][key], "{:.1f}" if key == "train_seconds" else "{:.4f}", std_when_one=False))
        lines.append(cells)
    return markdown(head, lines)


def arm_rows(rows, metric=None):
    """One row per (setting, method, seed) as the best-vs-best tables pair them: ``kind`` (SML: transfer, the rest:
    baseline), ``valid_<metric>`` the mean of the validation periods, ``test_<metric>`` that of the test periods and
    the per-user test values (a user's values averaged over the test periods she was tested in); empty when the rows
    hold no per-user values. ``metric`` None: NDCG at the largest cut-off."""
    if not rows or not any(r.get("per_user") for r in rows):
        return []
    metric = metric or f"ndcg@{max(int(k.split('@')[1]) for k in rows[0] if k.startswith(f'{PERIOD_METRICS[0]}@'))}"
    arms = []
    for (target, method, seed) in dict.fromkeys((r.get("target"), r["method"], r.get("seed")) for r in rows):
        own = [r for r in rows if (r.get("target"), r["method"], r.get("seed")) == (target, method, seed)]
        valid, test = [r for r in own if r["phase"] == "valid"], [r for r in own if r["phase"] == "test"]
        if not valid or not test or not all(r.get("per_user") for r in test):
            continue
        arms.append({"target": target, "arm": _label(method), "seed": seed, "metric": metric,
                     "kind": "transfer" if method == "sml" else "baseline", "fingerprint": test[0].get("fingerprint"),
                     f"valid_{metric}": float(np.mean([r[metric] for r in valid])),
                     f"test_{metric}": float(np.mean([r[metric] for r in test])),
                     "test_per_user": {metric: [v for r in test for v in r["per_user"][metric]]},
                     "test_users": [u for r in test for u in r["user_ids"]]})
    return arms


def best_vs_best(rows, metric=None):
    """SML (the transfer arm) against the best baseline method (popularity, ItemKNN, EASE, full retraining,
    fine-tuning, ...), picked per seed on the mean of the validation periods, paired per user on the test periods
    (:func:`arm_rows`); empty when the rows hold no per-user values."""
    arms = arm_rows(rows, metric)
    return best_baseline_table(arms, f"test_{arms[0]['metric']}") if arms else ""


def period_table_of(rows, metric="ndcg@20"):
    """Per-period ``metric`` of every method (mean over seeds), with the period's users and warm users."""
    periods = sorted({r["period"] for r in rows})
    methods = _methods_in(rows)
    head = ["period", "phase", "users (warm)", "excluded"] + [_label(m) for m in methods]
    lines = []
    for p in periods:
        at = [r for r in rows if r["period"] == p]
        first = at[0]
        cells = [str(p), first["phase"], f"{first['users']} ({first['warm_users']})", str(first["excluded"])]
        cells += [f"{np.mean([r[metric] for r in at if r['method'] == m]):.4f}" for m in methods]
        lines.append(cells)
    return f"{metric} per period\n\n" + markdown(head, lines)


def plot_curves(rows, path, metrics=("recall@20", "ndcg@20")):
    """Per-period curves of every method (mean over seeds; test periods shaded), written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6))
    test_periods = sorted({r["period"] for r in rows if r["phase"] == "test"})
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for m in _methods_in(rows):
            periods = sorted({r["period"] for r in rows if r["method"] == m})
            values = [np.mean([r[metric] for r in rows if r["method"] == m and r["period"] == p]) for p in periods]
            ax.plot(periods, values, marker="o", label=_label(m))
        if test_periods:
            ax.axvspan(test_periods[0] - 0.5, test_periods[-1] + 0.5, color="0.92", zorder=0)
        ax.set_xlabel("tested period t (model after t-1)")
        ax.set_ylabel(metric)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
