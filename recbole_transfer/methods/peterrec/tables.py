"""PeterRec's Table 3 shape: method x task, each task's own metric, and the trainable share of the network."""

import numpy as np

from ...report import baseline_arm, markdown, mean_std, paired_vs


METRIC_NAMES = {"hit@1": "accuracy"}


def method_table(rows):
    """Method x task: one row per method (arm), one column per task (its own test metric, mean ± std over
    seeds), then the method's trainable parameters without the head and their share of the network."""
    tasks = list(dict.fromkeys(r["target"] for r in rows))
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    metric_of = {r["target"]: r["metric"] for r in rows}
    header = ["method"] + [f"{t} {METRIC_NAMES.get(metric_of[t], metric_of[t])}" for t in tasks] + [
        "trainable w/o head", "% of network", "trainable with head (max over tasks)",
    ]
    lines = []
    for arm in arms:
        cells = [arm]
        for task in tasks:
            values = np.array([r[f"test_{r['metric']}"] for r in rows if r["arm"] == arm and r["target"] == task])
            cells.append(mean_std(values) if values.size else "-")
        counts = [r["trainable"] for r in rows if r["arm"] == arm and r.get("trainable")]
        if counts:
            c = counts[0]
            cells += [f"{c['trainable_no_head']:,}", f"{100.0 * c['trainable_no_head'] / c['network']:.2f}%",
                      f"{max(x['trainable'] for x in counts):,}"]
        else:
            cells += ["-", "-", "-"]
        lines.append(cells)
    seeds = len(set(r["seed"] for r in rows))
    title = f"Test metric per task (mean ± std over {seeds} seed{'s' if seeds > 1 else ''}); trainable parameters per method"
    return title + "\n\n" + markdown(header, lines, str.ljust)


def method_paired_table(rows, baseline=None):
    """Method x task: each task's own test metric, paired difference to ``baseline`` (each user's difference
    averaged over the seeds that tested her) with its bootstrap 95 % interval; ``*``: the interval excludes 0."""
    baseline = baseline or baseline_arm(rows)
    tasks = list(dict.fromkeys(r["target"] for r in rows))
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != baseline]
    metric_of = {r["target"]: r["metric"] for r in rows}
    lines = []
    for arm in arms:
        cells = [arm]
        for task in tasks:
            diff = paired_vs(rows, arm, baseline, f"test_{metric_of[task]}", [task])
            cells.append(diff.cell() if diff else "-")
        lines.append(cells)
    header = ["method"] + [f"{t} {METRIC_NAMES.get(metric_of[t], metric_of[t])}" for t in tasks]
    title = (f"Paired difference to {baseline} per task (test; each user's difference averaged over the seeds that tested "
             f"her) [bootstrap 95 % interval over users]; * = excludes 0")
    return title + "\n\n" + markdown(header, lines, str.ljust)
