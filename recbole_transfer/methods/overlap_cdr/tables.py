"""The overlap family's results: a run's text, and a scenario's tables per task (setting x arm, mean ± std over seeds,
each arm's paired difference to the task's baseline, the source domain's table when it was evaluated)."""

import numpy as np

from ...report import best_baseline_table, markdown, mean_std, paired_vs
from .stages import stage_table

TASK_ARMS = {
    "ranking": ["TargetMF", "pop", "ItemKNN", "EASE", "SLIM", "CMF", "EMCDR", "PTUPCDR", "CrossItemKNN", "CrossEASE"],
    "rating": ["TargetMF", "global_mean", "item_mean", "item_mean_offset", "CMF", "EMCDR", "PTUPCDR", "CrossEASE"],
}
TASKS = tuple(TASK_ARMS)
# arms of no transfer (the target alone): the baselines the best transfer arm is compared with
BASELINE_ARMS = {"TargetMF", "pop", "ItemKNN", "EASE", "SLIM", "global_mean", "item_mean", "item_mean_offset"}


def setting_label(row):
    return "warm" if row["protocol"] == "warm" else f"cold_start eta={row['eta']:g}"


def result_text(row, pair, domains):
    lines = pair.summary() + ["", stage_table(row["stages"]), ""]
    metrics = [k for k in row if k.startswith("test_") and k not in ("test_per_user", "test_users")]
    lines.append(f"{row['model']} on {pair.target.dataset.dataset_name} ({setting_label(row)}, task {row['task']}), test: "
                 + ", ".join(f"{k[5:]} {row[k]:.4f}" for k in metrics))
    source_metrics = [k for k in row if k.startswith("source_test_")]
    if "source" in domains:
        lines.append(f"source {pair.source.dataset.dataset_name}, test: "
                     + (", ".join(f"{k[12:]} {row[k]:.4f}" for k in source_metrics) or "- (no source vectors)"))
    lines.append(f"{row['epochs']} epochs in {row['seconds']:.1f}s ({row['seconds_per_epoch']:.2f}s per training epoch); "
                 f"model file {row['model_file']}")
    return "\n".join(lines)


def reference_arm(task, setting, arms):
    """The single-domain baseline every arm of a setting is paired with: EASE on the target (warm ranking), popularity
    (cold-start ranking: a cold user has no target row for EASE to read), item mean + the source offset (ratings); the
    task's first arm when that one did not run."""
    if task == "rating":
        wanted = "item_mean_offset"
    else:
        wanted = "EASE" if setting == "warm" else "pop"
    return wanted if wanted in arms else TASK_ARMS[task][0]


def table_metrics(task):
    if task == "rating":
        return ["test_rmse", "test_mae", "test_mse"]
    return ["test_ndcg@10", "test_recall@10", "test_hit@10", "test_mrr@10"]


def results_tables(rows, baseline=None):
    """Per task: setting x arm means ± std over seeds, and each arm's paired difference to the baseline."""
    parts = []
    for task in [t for t in TASKS if any(r["task"] == t for r in rows)]:
        scoped = [r for r in rows if r["task"] == task]
        metrics = [m for m in table_metrics(task) if any(m in r for r in scoped)]
        settings = list(dict.fromkeys(r["target"] for r in scoped))
        arms = list(dict.fromkeys(r["arm"] for r in scoped))
        lines, references = [], {}
        for setting in settings:
            ran = {r["arm"] for r in scoped if r["target"] == setting}
            base = references[setting] = baseline or reference_arm(task, setting, ran)
            for arm in arms:
                group = [r for r in scoped if r["target"] == setting and r["arm"] == arm]
                if not group:
                    continue
                cells = [mean_std([r[m] for r in group if m in r]) if any(m in r for r in group) else "-" for m in metrics]
                paired = paired_vs(scoped, arm, base, "test_mse" if task == "rating" else metrics[0], [setting]) \
                    if arm != base else None
                lines.append([setting, arm] + cells + [paired.cell() if paired else "(reference)" if arm == base else "-",
                                                       f"{np.mean([r['seconds_per_epoch'] for r in group]):.2f}",
                                                       f"{np.mean([r['seconds'] for r in group]):.1f}"])
        key = "MSE per user" if task == "rating" else metrics[0].replace("test_", "")
        named = "; ".join(f"{s}: {b}" for s, b in references.items())
        parts.append(
            f"Task {task}: test metrics, mean ± std over {len({r['seed'] for r in scoped})} seed(s); paired = the arm minus "
            f"the setting's single-domain reference ({named}) in {key} (each user's difference averaged over seeds, "
            "bootstrap 95 % interval over users; * excludes 0)"
            "\n\n" + markdown(["setting", "arm"] + [m.replace("test_", "") for m in metrics]
                              + ["paired vs reference", "s/epoch", "s"], lines)
        )
        best = best_baseline_table([r for r in scoped if r.get("kind")], "test_mse" if task == "rating" else metrics[0],
                                   lower=task == "rating")
        if best:
            parts.append(best)
        source = [m for m in sorted({k for r in scoped for k in r if k.startswith("source_test_")})]
        if source:
            lines = [[setting, arm] + [mean_std([r[m] for r in scoped if r["target"] == setting and r["arm"] == arm and m in r])
                                       if any(m in r for r in scoped if r["target"] == setting and r["arm"] == arm) else "-"
                                       for m in source]
                     for setting in settings for arm in arms
                     if any(r["target"] == setting and r["arm"] == arm for r in scoped)]
            parts.append(f"Task {task}, the SOURCE domain's test split\n\n"
                         + markdown(["setting", "arm"] + [m.replace("source_test_", "") for m in source], lines))
    return "\n\n".join(parts)
