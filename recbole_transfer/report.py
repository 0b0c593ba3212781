"""Result tables, paired intervals and plots of a scenario's rows (one row per seed x target x arm).

Every table is Markdown, written by :func:`markdown`; mean ± std by :func:`mean_std`. Each method picks the tables
of its scenario (``Method.tables``): these shared ones, or its own (in its folder, built from these helpers).

Tables (mean over seeds; a paired difference averages each user's difference over the seeds that evaluated her,
bootstraps users, and treats targets as strata): :func:`paired_table` (every arm's paired difference with its
interval); :func:`metric_table` (mean ± std per target and arm); :func:`one_to_many_table` (per target, macro,
wall time); :func:`forest_plot` (each arm's paired gain over the baseline with its interval, per target).
Helpers: :func:`paired_vs`, :func:`validation_picks` (the validation-selected arm per seed, or the test-selected
ORACLE). :func:`best_by_kind` and :func:`best_baseline_table`: the best transfer arm against the best baseline arm
(popularity, ItemKNN, EASE, the scratch model), each picked on validation per seed, paired per user on test.
"""

from collections import defaultdict

import numpy as np

from . import registry
from .stats import paired_strata, paired_users
from .transfer import NO_TRANSFER


def markdown(header, lines, justify=None):
    """A Markdown table. ``justify``: ``str.rjust`` or ``str.ljust`` pads every column to its widest cell;
    None writes the cells as they are."""
    if justify is None:
        return "\n".join(["| " + " | ".join(str(c) for c in header) + " |", "|" + "---|" * len(header)] +
                         ["| " + " | ".join(str(c) for c in cells) + " |" for cells in lines])
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = lambda cells: "| " + " | ".join(justify(str(c), w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(c) for c in lines])


def mean_std(values, fmt="{:.4f}", std_when_one=True):
    """``mean ± std`` of ``values`` (population std, as numpy); ``std_when_one=False``: the mean alone for one value."""
    values = np.asarray(values, dtype=np.float64)
    if not std_when_one and values.size == 1:
        return fmt.format(values.mean())
    return f"{fmt.format(values.mean())} ± {fmt.format(values.std())}"


def test_metrics(rows):
    """The rows' test metrics: the valid_metric first, then every other top-k test metric the runs computed."""
    return list(dict.fromkeys([f"test_{rows[0]['metric']}"] + [k for k in rows[0] if k.startswith("test_") and "@" in k]))


def short_name(metric):
    """'test_hit@10' -> 'HR@10'."""
    return metric.replace("test_", "").replace("hit", "HR")


def baseline_arm(rows):
    """The arm every other arm is paired with: the baseline arm of the rows' method, else no transfer; the first
    arm when neither ran."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    declared = registry.method_of(rows[0]["model"]).baseline_arm if rows else NO_TRANSFER
    for candidate in (declared, NO_TRANSFER):
        if candidate in arms:
            return candidate
    return arms[0] if arms else NO_TRANSFER



def mean_by(rows, keys, metric):
    groups = defaultdict(list)
    for row in rows:
        if metric in row:
            groups[tuple(row[k] for k in keys)].append(row[metric])
    return {k: float(np.mean(v)) for k, v in groups.items()}


def metric_table(rows, metrics=("test_hit@10", "test_ndcg@10")):
    """Text table: mean and std over seeds of each metric, per target and arm."""
    lines = []
    groups = defaultdict(list)
    for row in rows:
        groups[(row["target"], row["arm"])].append(row)
    for (target, arm), group in groups.items():
        cells = []
        for metric in metrics:
            values = np.array([r[metric] for r in group if metric in r])
            cells.append(mean_std(values) if values.size else "-")
        epochs = np.mean([r["epochs"] for r in group])
        seconds = np.mean([r["seconds"] for r in group])
        lines.append([target, arm] + cells + [f"{epochs:.1f}", f"{seconds:.1f}"])
    return markdown(["target", "arm"] + [m.replace("test_", "") for m in metrics] + ["epochs", "fit s"], lines)


def rows_by_key(rows):
    return {(r["seed"], r["target"], r["arm"]): r for r in rows}


def paired_vs(rows, arm, baseline, metric, targets=None):
    """:class:`~recbole_transfer.stats.PairedDiff` of ``arm`` minus ``baseline`` on ``metric`` ('test_hit@10'):
    per target, each user's difference averaged over the seeds that evaluated her; one stratum per target
    (several targets: the macro difference). None when nothing pairs."""
    by = rows_by_key(rows)
    targets = targets or list(dict.fromkeys(r["target"] for r in rows))
    return paired_strata([[paired_users(by[(s, t, a)], by[(s, t, baseline)], metric)
                            for (s, t, a) in by if t == target and a == arm and (s, t, baseline) in by]
                           for target in targets])


def validation_picks(rows, target, baseline=NO_TRANSFER, key=None):
    """Per seed, the arm with the best validation score of the primary metric (at its best epoch; ties: the
    baseline, then table order): what a user choosing on validation would deploy. ``key`` (a row key, e.g.
    'test_hit@10') picks on that instead: the per-seed ORACLE."""
    by, picks = rows_by_key(rows), {}
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    arms = [baseline] + [a for a in arms if a != baseline] if baseline in arms else arms
    for seed in sorted({r["seed"] for r in rows if r["target"] == target}):
        scored = [by[(seed, target, a)] for a in arms if (seed, target, a) in by]
        score = (lambda r: r.get(key, float("-inf"))) if key else (lambda r: r.get(f"valid_{r['metric']}", float("-inf")))
        picks[seed] = max(scored, key=lambda r: (score(r), -scored.index(r)))
    return picks


def paired_table(rows, metric="test_hit@10", baseline=None):
    """Target x arm: mean paired difference to ``baseline`` with its bootstrap 95 % interval (each user's
    difference averaged over the seeds that evaluated her; ``*``: excludes 0); a last row pools targets as
    strata (the macro difference)."""
    baseline = baseline or baseline_arm(rows)
    targets = list(dict.fromkeys(r["target"] for r in rows))
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != baseline]
    short = short_name(metric)
    lines = []
    for target in targets + ["macro"]:
        scope = targets if target == "macro" else [target]
        cells = [target]
        for arm in arms:
            diff = paired_vs(rows, arm, baseline, metric, scope)
            cells.append(diff.cell() if diff else "-")
        lines.append(cells)
    n = [paired_vs(rows, a, baseline, metric, [t]) for t in targets[:1] for a in arms[:1]]
    users = f"; {n[0].n} users in {targets[0]}" if n and n[0] else ""
    title = (f"Paired difference of {short} to {baseline} (test): mean over users of each user's difference averaged "
             f"over seeds [bootstrap 95 % interval over users]{users}; * = the interval excludes 0; macro = mean over targets")
    return title + "\n\n" + markdown(["target"] + arms, lines, str.rjust)


def forest_plot(rows, path, metric="test_hit@10", baseline=None):
    """A PNG: per target, each arm's paired gain over ``baseline`` with its 95 % interval (``metric`` None:
    each target's own primary metric, e.g. tasks with different metrics)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    baseline = baseline or baseline_arm(rows)
    targets = list(dict.fromkeys(r["target"] for r in rows))
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != baseline]
    metric_of = {r["target"]: metric or f"test_{r['metric']}" for r in rows}  # None: each target's own metric
    entries = []
    for target in targets:
        for arm in arms:
            diff = paired_vs(rows, arm, baseline, metric_of[target], [target])
            if diff is not None:
                entries.append((f"{target} ({metric_of[target][5:]})" if metric is None else target, arm, diff))
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(entries) + 1.4))
    for y, (target, arm, d) in enumerate(entries):
        colour = "tab:green" if d.low > 0 else "tab:red" if d.high < 0 else "tab:grey"
        ax.errorbar(d.mean, -y, xerr=[[d.mean - d.low], [d.high - d.mean]], fmt="o", color=colour, capsize=2, ms=4)
    ax.set_yticks([-y for y in range(len(entries))])
    ax.set_yticklabels([f"{t}: {a}" for t, a, _ in entries], fontsize=7)
    for y in range(1, len(entries)):
        if entries[y][0] != entries[y - 1][0]:
            ax.axhline(-y + 0.5, color="0.85", lw=0.8)
    ax.axvline(0.0, color="black", lw=0.8)
    short = short_name(metric) if metric else "each task's metric"
    ax.set_xlabel(f"paired difference of test {short} to {baseline} (95 % bootstrap interval)")
    ax.set_title(f"Gain over {baseline} per target (green / red: the interval excludes 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def first_time_reaching(curve, level):
    """Seconds into a run's fit when its validation score first reached ``level`` (None: never)."""
    for _epoch, seconds, score in curve:
        if score >= level:
            return seconds
    return None


def best_epoch(row):
    """Epochs to the best validation score of a run (from its validation curve)."""
    curve = row.get("valid_curve") or []
    return max(curve, key=lambda point: (point[2], point[0]))[0] + 1 if curve else float("nan")  # the last best, as RecBole


def one_to_many_table(rows, metrics=("test_hit@10", "test_ndcg@10"), baseline=NO_TRANSFER):
    """One source, many targets: each metric per target and arm (mean over seeds) with the macro average
    over targets (mean ± std over seeds), then per arm the macro metrics, the wall time summed over targets
    (mean over seeds) and its ratio to ``baseline``'s, epochs run and epochs to the best validation score."""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    seeds = sorted(set(r["seed"] for r in rows))
    name = lambda arm: "scratch" if arm == baseline else arm  # noqa: E731
    parts = []

    def per_seed(arm, key, reduce):
        """[reduce over targets of the arm's value, for each seed that has every target]."""
        out = []
        for seed in seeds:
            values = [r[key] for r in rows if r["arm"] == arm and r["seed"] == seed and key in r]
            if len(values) == len(targets):
                out.append(reduce(values))
        return np.array(out)

    of_seeds = f"mean of {len(seeds)} seed{'s' if len(seeds) > 1 else ''}"
    for metric in list(metrics) + ["seconds"]:
        wall = metric == "seconds"  # per target wall time; its last row is the sum over targets
        means = mean_by(rows, ("target", "arm"), metric)
        header = ["target"] + [name(a) for a in arms]
        cell = "{:.1f}" if wall else "{:.4f}"
        lines = [[t] + [cell.format(means[(t, a)]) if (t, a) in means else "-" for a in arms] for t in targets]
        last = ["all targets" if wall else "macro"]
        for arm in arms:
            values = per_seed(arm, metric, np.sum if wall else np.mean)
            last.append((f"{values.mean():.1f}" if wall else mean_std(values)) if values.size else "-")
        short = short_name(metric)
        title = (f"wall s per target (training and validation), {of_seeds}; all targets: their sum" if wall else
                 f"{short} (test) per target, {of_seeds}; macro: mean over targets, ± std over seeds")
        parts.append(title + "\n\n" + markdown(header, lines + [last], str.rjust))
    header = ["arm"] + [f"macro {short_name(m)}" for m in metrics] + [
        f"{short_name(metrics[0])} - {name(baseline)}, paired [95% CI]",
        "wall s, all targets", f"x {name(baseline)}", "epochs run", "epochs to best", "trainable params"]
    scratch_time = per_seed(baseline, "seconds", np.sum)
    lines = []
    for arm in arms:
        cells = [name(arm)]
        for metric in metrics:
            values = per_seed(arm, metric, np.mean)
            cells.append(mean_std(values) if values.size else "-")
        diff = paired_vs(rows, arm, baseline, metrics[0], targets) if arm != baseline else None
        cells.append(diff.cell() if diff else "-")
        total = per_seed(arm, "seconds", np.sum)
        cells.append(f"{total.mean():.1f}" if total.size else "-")
        cells.append(f"{total.mean() / scratch_time.mean():.2f}" if total.size and scratch_time.size else "-")
        group = [r for r in rows if r["arm"] == arm]
        cells.append(f"{np.mean([r['epochs'] for r in group]):.1f}")
        cells.append(f"{np.nanmean([best_epoch(r) for r in group]):.1f}")
        counts = [r["trainable"]["trainable"] for r in group if r.get("trainable")]
        cells.append(f"{int(np.mean(counts)):,}" if counts else "all")
        lines.append(cells)
    parts.append("Per arm over all targets (paired: each user's difference averaged over the seeds, users resampled, "
                 "targets as strata, * = the interval excludes 0; wall s: training and validation, summed over targets, "
                 "mean over seeds)"
                 "\n\n" + markdown(header, lines, str.rjust))
    return "\n\n".join(parts)



BEST = {"baseline": "best baseline", "transfer": "best transfer"}


def best_by_kind(rows, scope=lambda r: r["target"], seed_key="seed", lower=lambda r: False):
    """Per (scope, seed), the ``baseline`` arm and the ``transfer`` arm (a row's ``kind``) with the best validation score
    of its primary metric (``valid_<metric>``; ``lower(row)``: lower is better; ties: the first row), as rows relabelled
    ``best baseline`` / ``best transfer`` with ``picked`` (the arm's name), ``target`` = ``scope(row)`` and ``seed`` =
    ``row[seed_key]``: rows :func:`paired_vs` pairs. A pick never looks at a test value."""
    groups = {}
    for row in rows:
        score = row.get(f"valid_{row['metric']}")
        if score is not None and row.get("kind") in BEST:
            groups.setdefault((scope(row), row[seed_key], row["kind"]), []).append(row)
    out = []
    for (where, seed, kind), group in groups.items():
        sign = -1.0 if lower(group[0]) else 1.0
        pick = max(group, key=lambda r: (sign * r[f"valid_{r['metric']}"], -group.index(r)))
        out.append({**pick, "arm": BEST[kind], "picked": pick["arm"], "target": where, "seed": seed})
    return out


def picked_names(rows):
    """'EASE x2, pop x1' (one seed: the name alone)."""
    names = [r["picked"] for r in rows]
    return ", ".join(f"{n} x{names.count(n)}" if len(rows) > 1 else n for n in dict.fromkeys(names))


def best_baseline_table(rows, metric=None, lower=False):
    """Per target: the best baseline arm and the best transfer arm, each picked on validation per seed, their test
    ``metric`` (None: each target's primary metric; mean over seeds) and the paired difference, transfer minus
    baseline, with its bootstrap 95 % interval. ``lower``: an error metric (RMSE; its per-user key e.g. ``test_mse``):
    picks take the lowest validation value and the difference is baseline minus transfer (a gain is > 0). Empty when
    the rows lack either kind."""
    picks = best_by_kind(rows, lower=lambda r: lower)
    lines = []
    for target in dict.fromkeys(r["target"] for r in picks):
        base = [r for r in picks if r["target"] == target and r["arm"] == BEST["baseline"]]
        tran = [r for r in picks if r["target"] == target and r["arm"] == BEST["transfer"]]
        if not base or not tran:
            continue
        key = metric or f"test_{base[0]['metric']}"
        diff = paired_vs(picks, BEST["transfer"], BEST["baseline"], key, [target])
        if diff is not None and lower:
            diff = type(diff)(-diff.mean, -diff.high, -diff.low, diff.se, diff.n)
        lines.append([target, short_name(key), picked_names(base), f"{np.mean([r[key] for r in base]):.4f}", picked_names(tran),
                      f"{np.mean([r[key] for r in tran]):.4f}", diff.cell() if diff else "-",
                      "-" if diff is None else "within noise" if not diff.excludes_zero else
                      "transfer wins" if diff.mean > 0 else "baseline wins"])
    if not lines:
        return ""
    baselines = ", ".join(dict.fromkeys(r["arm"] for r in rows if r.get("kind") == "baseline"))
    return (f"Best transfer arm vs best baseline arm (the baseline arms run: {baselines}), each picked on "
            "validation per seed; the metric on test, mean over seeds; paired difference transfer minus "
            f"baseline{' (an error metric: baseline minus transfer)' if lower else ''} [bootstrap 95 % interval over users]. Arms run with their configured keys: the leaderboard "
            "(--leaderboard) tunes each with the same trials\n\n"
            + markdown(["target", "metric", "best baseline (picked)", "its test", "best transfer (picked)", "its test",
                        "paired diff [95% CI]", "finding"], lines))
