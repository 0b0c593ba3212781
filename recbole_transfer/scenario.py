"""One source, many targets, many transfer arms: the paper's Table 3 experiment.

``run_scenario`` pretrains the source once per seed, then trains every (target, arm) pair through
``run_transfer`` and collects test metrics. ``gain_table`` prints the paper's Table 3 shape:
target x config, % HR@10 gain over scratch, the best config with its HR@10, and the KL relatedness
of the target to the source.
"""

import logging
import time
from collections import defaultdict

import numpy as np

from .config import TransferConfig
from .errors import TransferConfigError
from .quick_start import pretrain_source, run_transfer
from .transfer import ARMS, NO_TRANSFER, parse_transfer
from .utils import property_file

logger = logging.getLogger(__name__)

DEFAULT_SCENARIO = property_file("scenario", "ml100k_genres.yaml")


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
    arms = list(arms or ARMS)
    for arm in arms:
        parse_transfer(arm)
    seeds = list(seeds or [probe["seed"]])
    total = len(seeds) * len(targets) * len(arms)
    rows, done, start = [], 0, time.time()
    for seed in seeds:
        seeded = {**config_dict, "seed": seed}
        t0 = time.time()
        pretrained = pretrain_source(model, source, config_file_list, seeded, verbose=verbose)
        if progress:
            hr = pretrained.test_result.get("hit@10")
            progress(f"seed {seed}: source {source!r} trained in {time.time() - t0:.1f}s (test HR@10 {hr})")
        for target in targets:
            for arm in arms:
                result = run_transfer(
                    model, source, target, config_file_list, {**seeded, "transfer": arm},
                    pretrained=pretrained, verbose=verbose, log=False,
                )
                done += 1
                row = {
                    "seed": seed, "target": target, "arm": parse_transfer(arm)[0],
                    "mode": result["transfer_mode"], "relatedness": result["relatedness"],
                    "epochs": result["epochs_run"], "seconds": result["fit_seconds"],
                    "valid_curve": result["valid_curve"],
                    **{f"test_{k}": v for k, v in (result["test_result"] or {}).items()},
                    **{f"valid_{k}": v for k, v in (result["best_valid_result"] or {}).items()},
                }
                rows.append(row)
                if progress:
                    progress(
                        f"[{done}/{total}] seed {seed} target {target:<10} {row['arm']:<9} "
                        f"HR@10 {row.get('test_hit@10', float('nan')):.4f}  NDCG@10 {row.get('test_ndcg@10', float('nan')):.4f}  "
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
            cells.append(f"{values.mean():.4f} ± {values.std():.4f}" if values.size else "-")
        epochs = np.mean([r["epochs"] for r in group])
        seconds = np.mean([r["seconds"] for r in group])
        lines.append(f"| {target} | {arm} | " + " | ".join(cells) + f" | {epochs:.1f} | {seconds:.1f} |")
    return "\n".join(lines)


def gain_table(rows, metric="test_hit@10"):
    """Text table: target x arm gain (%) over scratch, best arm and its metric, KL relatedness."""
    targets = list(dict.fromkeys(r["target"] for r in rows))
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != NO_TRANSFER]
    means = mean_by(rows, ("target", "arm"), metric)
    kl = mean_by([r for r in rows if r["relatedness"] is not None], ("target",), "relatedness")
    seeds = len(set(r["seed"] for r in rows))
    short = metric.replace("test_", "").replace("hit", "HR")
    header = ["target", f"scratch {short}"] + arms + ["best", f"best {short}", "KL(S||T)"]
    lines = []
    for target in targets:
        base = means.get((target, NO_TRANSFER))
        gains = {}
        cells = [target, f"{base:.4f}" if base is not None else "-"]
        for arm in arms:
            value = means.get((target, arm))
            if value is None or not base:
                cells.append("-")
                continue
            gains[arm] = 100.0 * (value - base) / base
            cells.append(f"{gains[arm]:+.1f}")
        candidates = {NO_TRANSFER: base or 0.0, **{a: means[(target, a)] for a in arms if (target, a) in means}}
        best = max(candidates, key=candidates.get)
        cells += [best, f"{candidates[best]:.4f}", f"{kl.get((target,), float('nan')):.3f}"]
        lines.append(cells)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *lines)]
    fmt = lambda cells: "| " + " | ".join(str(c).rjust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    out = [fmt(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [fmt(c) for c in lines]
    title = f"Gain (%) of {short} over scratch (test, mean of {seeds} seed{'s' if seeds > 1 else ''}); transfer_mode={rows[0]['mode'] if rows else '-'}"
    return title + "\n\n" + "\n".join(out)
