"""One source, many targets, many transfer arms: the Table 3 experiments of both papers.

``run_scenario`` pretrains the source once per seed, then trains every (target, arm) pair through
``run_transfer`` and collects test metrics, per user too. Within a seed every arm of a target is scored on
the same data: the seed is the replicate's ``data_seed`` (split, thinning, candidates) and its training seed.
Arms are layer transfers (``none``, ``config-1``..) for layer-transfer models, or fine-tuning methods
(``finecls``, ``peterrec/parallel``, ...) for PeterRec.

Tables (mean over seeds; a paired difference averages each user's difference over the seeds that evaluated
her, bootstraps users, and treats targets as strata):
``gain_table`` prints the layer-transfer paper's Table 3 shape: target x config, % gain over scratch
(``*``: the paired 95 % interval excludes 0), the validation-selected arm with its test score and paired
difference, the test-selected arm labelled *oracle*, and the KL relatedness of the target to the source;
``paired_table`` gives every arm's paired difference with its interval; ``method_table`` prints PeterRec's
Table 3 shape; ``one_to_many_table`` the MMT-Net shape (per target, macro, wall time); ``forest_plot``
draws each arm's paired gain over the baseline with its interval, per target.
"""

import logging
import time
from collections import defaultdict

import numpy as np

from .config import TransferConfig, get_model
from .errors import TransferConfigError
from .quick_start import check_domains, pretrain_source, run_transfer
from .stats import paired_strata, paired_users
from .transfer import (ARMS, NO_TRANSFER, PATCH_ARMS, SHARED_ARMS, PatchTransfer, SharedModuleTransfer, arm_overrides,
                       parse_transfer, uses_patches, uses_shared_modules)
from .utils import property_file

logger = logging.getLogger(__name__)

DEFAULT_SCENARIO = property_file("scenario", "ml100k_genres.yaml")
PETERREC_SCENARIO = property_file("scenario", "ml100k_peterrec.yaml")
REGIONS_SCENARIO = property_file("scenario", "ml100k_regions.yaml")


def default_scenario(model):
    """The bundled scenario of a model: PeterRec's tasks, MMTNet's regions, or the layer-transfer genres."""
    if uses_patches(model):
        return PETERREC_SCENARIO
    return REGIONS_SCENARIO if uses_shared_modules(model) else DEFAULT_SCENARIO


def default_arms(model):
    """Arms of a scenario when none are given: the model's methods (with their baselines)."""
    if uses_patches(model):
        return list(PATCH_ARMS)
    return list(SHARED_ARMS) if uses_shared_modules(model) else list(ARMS)


def baseline_arm(rows):
    """The arm every other arm is paired with: the model's ``scratch_arm`` (a model fine-tuned by method
    declares its no-pretraining arm), else no transfer; the first arm when neither ran."""
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    declared = getattr(get_model(rows[0]["model"]), "scratch_arm", NO_TRANSFER) if rows else NO_TRANSFER
    for candidate in (declared, NO_TRANSFER):
        if candidate in arms:
            return candidate
    return arms[0] if arms else NO_TRANSFER


# Arms that train another RecBole model on the target alone (a baseline beside the transfer arms).
# "bag": logistic regression on the user's source items (reads source_checkpoint, learns no transfer).
BASELINE_ARMS = {"pop": "Popularity", "bag": "BagOfItems"}  # pop: on a profile task, the majority label


def arm_label(arm, model):
    """Validate an arm of ``model``'s scenario and return its name in tables."""
    if arm in BASELINE_ARMS:
        return arm
    if uses_patches(model):
        overrides = arm_overrides(arm)
        PatchTransfer(overrides["transfer"], overrides.get("patch_position", "serial"))
        return str(arm)
    if uses_shared_modules(model):
        return SharedModuleTransfer(arm).label
    return parse_transfer(arm)[0]


def scenario_targets(config, given=None):
    targets = given if given is not None else config["targets"]
    if isinstance(targets, str):
        targets = [t for t in targets.replace(",", " ").split() if t]
    if not targets:
        raise TransferConfigError("targets: no target domain given (--target=<name> or a 'targets:' list)")
    return list(targets)


def run_scenario(
    model=None, source=None, targets=None, config_file_list=None, config_dict=None, arms=None, seeds=None,
    progress=None, verbose=False,
):
    """Train every (seed, target, arm); returns a list of row dicts (one per run)."""
    config_dict = dict(config_dict or {})
    probe = TransferConfig(model, "ml-100k", config_file_list, config_dict)
    model = model or probe["model"]
    source = source or probe["source"]
    if not source:
        raise TransferConfigError("source: no source domain given (--source=<name> or a 'source:' key)")
    targets = scenario_targets(probe, targets)
    check_domains(probe, [source], "source", config_dict)
    check_domains(probe, targets, "targets", config_dict)
    arms = list(arms or default_arms(model))
    labels = {arm: arm_label(arm, model) for arm in arms}
    seeds = list(seeds or [probe["seed"]])
    total = len(seeds) * len(targets) * len(arms)
    rows, done, start = [], 0, time.time()
    for seed in seeds:
        seeded = {**config_dict, "seed": seed}  # the replicate: data_seed (when not given) and training seed
        t0 = time.time()
        if progress:
            progress(f"seed {seed}: source stage on {source!r} ...")
        pretrained = pretrain_source(model, source, config_file_list, seeded, verbose=verbose)
        if progress:
            shown = ", ".join(f"{k} {v}" for k, v in (pretrained.test_result or {}).items()) or "from checkpoint"
            progress(f"seed {seed}: source {source!r} trained in {time.time() - t0:.1f}s (test {shown})")
        for target in targets:
            for arm in arms:
                if arm in BASELINE_ARMS:
                    result = run_transfer(
                        BASELINE_ARMS[arm], None, target, config_file_list,
                        {**seeded, "transfer": "none", "source_checkpoint": pretrained.model_file},
                        verbose=verbose, log=False,
                    )
                else:
                    result = run_transfer(
                        model, source, target, config_file_list, {**seeded, **arm_overrides(arm)},
                        pretrained=pretrained, verbose=verbose, log=False,
                    )
                done += 1
                primary = str(result["config"]["valid_metric"]).lower()
                row = {
                    "seed": seed, "data_seed": result["data_seed"], "model": model, "target": target,
                    "arm": labels[arm], "metric": primary, "trainable": result["trainable"],
                    "mode": result["transfer_mode"], "relatedness": result["relatedness"],
                    "epochs": result["epochs_run"], "seconds": result["fit_seconds"],
                    "train_seconds": float(sum(result["epoch_seconds"]["train"])),
                    "valid_seconds": float(sum(result["epoch_seconds"]["valid"])),
                    "valid_curve": result["valid_curve"], "fingerprint": result["fingerprint"],
                    **{f"test_{k}": v for k, v in (result["test_result"] or {}).items()},
                    **{f"valid_{k}": v for k, v in (result["best_valid_result"] or {}).items()},
                    "test_per_user": result["test_per_user"], "test_users": result["test_users"],
                    "valid_per_user": result["valid_per_user"], "valid_users": result["valid_users"],
                }
                rows.append(row)
                if progress:
                    shown = "  ".join(f"{k} {v:.4f}" for k, v in (result["test_result"] or {}).items())
                    progress(
                        f"[{done}/{total}] seed {seed} target {target:<10} {row['arm']:<9} {shown}  "
                        f"epochs {row['epochs']:>3}  {row['seconds']:.1f}s  (elapsed {time.time() - start:.0f}s)"
                    )
    return rows


def mean_by(rows, keys, metric):
    groups = defaultdict(list)
    for row in rows:
        if metric in row:
            groups[tuple(row[k] for k in keys)].append(row[metric])
    return {k: float(np.mean(v)) for k, v in groups.items()}


def metric_table(rows, metrics=("test_hit@10", "test_ndcg@10")):
    """Text table: mean and std over seeds of each metric, per target and arm."""
    lines = ["| target | arm | " + " | ".join(m.replace("test_", "") for m in metrics) + " | epochs | fit s |",
             "|---|---|" + "---|" * (len(metrics) + 2)]
    groups = defaultdict(list)
    for row in rows:
        groups[(row["target"], row["arm"])].append(row)
    for (target, arm), group in groups.items():
        cells = []
        for metric in metrics:
            values = np.array([r[metric] for r in group if metric in r])
            cells.append(_mean_std(values) if values.size else "-")
        epochs = np.mean([r["epochs"] for r in group])
        seconds = np.mean([r["seconds"] for r in group])
        lines.append(f"| {target} | {arm} | " + " | ".join(cells) + f" | {epochs:.1f} | {seconds:.1f} |")
    return "\n".join(lines)


def _by_key(rows):
    return {(r["seed"], r["target"], r["arm"]): r for r in rows}


def paired_vs(rows, arm, baseline, metric, targets=None):
    """:class:`~recbole_transfer.stats.PairedDiff` of ``arm`` minus ``baseline`` on ``metric`` ('test_hit@10'):
    per target, each user's difference averaged over the seeds that evaluated her; one stratum per target
    (several targets: the macro difference). None when nothing pairs."""
    by = _by_key(rows)
    targets = targets or list(dict.fromkeys(r["target"] for r in rows))
    return paired_strata([[paired_users(by[(s, t, a)], by[(s, t, baseline)], metric)
                            for (s, t, a) in by if t == target and a == arm and (s, t, baseline) in by]
                           for target in targets])


def validation_picks(rows, target, baseline=NO_TRANSFER, key=None):
    """Per seed, the arm with the best validation score of the primary metric (at its best epoch; ties: the
    baseline, then table order): what a user choosing on validation would deploy. ``key`` (a row key, e.g.
    'test_hit@10') picks on that instead: the per-seed ORACLE."""
    by, picks = _by_key(rows), {}
    arms = list(dict.fromkeys(r["arm"] for r in rows))
    arms = [baseline] + [a for a in arms if a != baseline] if baseline in arms else arms
    for seed in sorted({r["seed"] for r in rows if r["target"] == target}):
        scored = [by[(seed, target, a)] for a in arms if (seed, target, a) in by]
        score = (lambda r: r.get(key, float("-inf"))) if key else (lambda r: r.get(f"valid_{r['metric']}", float("-inf")))
        picks[seed] = max(scored, key=lambda r: (score(r), -scored.index(r)))
    return picks


def _pick_label(picks):
    names = [p["arm"] for p in picks.values()]
    counts = {n: names.count(n) for n in dict.fromkeys(names)}
    return " ".join(n if c == len(names) else f"{n} ({c}/{len(names)})" for n, c in counts.items())


def gain_table(rows, metric="test_hit@10"):
    """Text table: target x arm gain (%) over scratch (``*``: paired 95 % interval excludes 0), the
    validation-selected arm per seed (its test score and paired difference), the test-selected arm per seed
    (an ORACLE: an upper bound on any per-seed choice, not a finding), KL relatedness."""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != NO_TRANSFER]
    means = mean_by(rows, ("target", "arm"), metric)
    kl = mean_by([r for r in rows if r["relatedness"] is not None], ("target",), "relatedness")
    seeds = len(set(r["seed"] for r in rows))
    short = metric.replace("test_", "").replace("hit", "HR")
    header = ["target", f"scratch {short}"] + arms + ["valid-selected arm", f"its {short}", "its paired diff [95% CI]",
                                                      "oracle arm (test-selected)", f"oracle {short}", "KL(S||T)"]
    by = _by_key(rows)
    lines = []
    for target in targets:
        base = means.get((target, NO_TRANSFER))
        cells = [target, f"{base:.4f}" if base is not None else "-"]
        for arm in arms:
            value = means.get((target, arm))
            if value is None or not base:
                cells.append("-")
                continue
            diff = paired_vs(rows, arm, NO_TRANSFER, metric, [target])
            cells.append(f"{100.0 * (value - base) / base:+.1f}{'*' if diff and diff.excludes_zero else ''}")
        picks = validation_picks(rows, target)
        picked = float(np.mean([p.get(metric, np.nan) for p in picks.values()]))
        diff = paired_strata([[paired_users(p, by[(s, target, NO_TRANSFER)], metric) for s, p in picks.items()
                               if (s, target, NO_TRANSFER) in by]])
        diff = diff.cell() if diff else "-"
        oracle = validation_picks(rows, target, key=metric)  # per seed, the best test score: a bound on any pick
        cells += [_pick_label(picks), f"{picked:.4f}", diff, _pick_label(oracle),
                  f"{np.mean([p.get(metric, np.nan) for p in oracle.values()]):.4f}", f"{kl.get((target,), float('nan')):.3f}"]
        lines.append(cells)
    title = (f"Gain (%) of {short} over scratch (test, mean of {seeds} seed{'s' if seeds > 1 else ''}; * = paired 95 % "
             f"interval excludes 0); transfer_mode={rows[0]['mode'] if rows else '-'}. Both selections pick per seed; the "
             "oracle picks on TEST: an upper bound on any per-seed choice, not a finding")
    return title + "\n\n" + _markdown(header, lines, str.rjust)


def paired_table(rows, metric="test_hit@10", baseline=None):
    """Target x arm: mean paired difference to ``baseline`` with its bootstrap 95 % interval (each user's
    difference averaged over the seeds that evaluated her; ``*``: excludes 0); a last row pools targets as
    strata (the macro difference)."""
    baseline = baseline or baseline_arm(rows)
    targets = list(dict.fromkeys(r["target"] for r in rows))
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != baseline]
    short = metric.replace("test_", "").replace("hit", "HR")
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
    return title + "\n\n" + _markdown(["target"] + arms, lines, str.rjust)


def forest_plot(rows, path, metric="test_hit@10", baseline=None):
    """A PNG: per target, each arm's paired gain over ``baseline`` with its 95 % interval (``metric`` None:
    each target's own primary metric, e.g. PeterRec's tasks)."""
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
    short = metric.replace("test_", "").replace("hit", "HR") if metric else "each task's metric"
    ax.set_xlabel(f"paired difference of test {short} to {baseline} (95 % bootstrap interval)")
    ax.set_title(f"Gain over {baseline} per target (green / red: the interval excludes 0)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _markdown(header, lines, justify):
    """A Markdown table with padded columns (``justify``: ``str.rjust`` or ``str.ljust``)."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = lambda cells: "| " + " | ".join(justify(str(c), w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(c) for c in lines])


def _mean_std(values):
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}"


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
            last.append((f"{values.mean():.1f}" if wall else _mean_std(values)) if values.size else "-")
        short = metric.replace("test_", "").replace("hit", "HR")
        title = (f"wall s per target (training and validation), {of_seeds}; all targets: their sum" if wall else
                 f"{short} (test) per target, {of_seeds}; macro: mean over targets, ± std over seeds")
        parts.append(title + "\n\n" + _markdown(header, lines + [last], str.rjust))
    header = ["arm"] + [f"macro {m.replace('test_', '').replace('hit', 'HR')}" for m in metrics] + [
        f"{metrics[0].replace('test_', '').replace('hit', 'HR')} - {name(baseline)}, paired [95% CI]",
        "wall s, all targets", f"x {name(baseline)}", "epochs run", "epochs to best", "trainable params"]
    scratch_time = per_seed(baseline, "seconds", np.sum)
    lines = []
    for arm in arms:
        cells = [name(arm)]
        for metric in metrics:
            values = per_seed(arm, metric, np.mean)
            cells.append(_mean_std(values) if values.size else "-")
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
                 "\n\n" + _markdown(header, lines, str.rjust))
    return "\n\n".join(parts)


METRIC_NAMES = {"hit@1": "accuracy"}


def method_table(rows):
    """PeterRec's Table 3: one row per method, one column per task (its own test metric, mean ± std over
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
            cells.append(_mean_std(values) if values.size else "-")
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
    return title + "\n\n" + _markdown(header, lines, str.ljust)


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
    return title + "\n\n" + _markdown(header, lines, str.ljust)
