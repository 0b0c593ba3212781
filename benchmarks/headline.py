"""Headline: one row per method family, built from the other benchmarks' results JSON files (no training).

Each row is one comparison a benchmark made, chosen by a rule fixed before reading its numbers: the benchmark's
ml-100k setting, its primary metric, the baseline it compares against, and the transfer arm chosen on VALIDATION or
declared before the run (never the test-selected oracle). The values and the paired difference with its bootstrap
95 % interval are computed as the benchmark computes them, with the same functions (``recbole_transfer.stats``,
``recbole_transfer.report``, the benchmark script's own helpers); "within noise" when the interval includes 0. The
last column counts how the same comparison came out in the benchmark's other settings (targets, sparsities, tasks,
etas), so that a row does not stand for more than it shows.

- layer transfer: ``tune_transfer.json``, the Ray Tune pick (ASHA, 1-SE rule on validation) per (data seed, target)
  against scratch, targets as strata (the benchmark's "all" row);
- MMT-Net: ``mmtnet_transfer.json``, DRR against MMTNet scratch, macro HR@10 over the 6 regions at the first (the
  scenario's) sparsity;
- SML: ``sml_retraining.json``, SML against Fine-tune on ml-100k, NDCG@20 over the test periods; that benchmark
  reports means ± std over seeds, no paired interval;
- PeterRec: ``peterrec_transfer.json``, PeterRec serial (the default patch) against PeterZero (the benchmark's
  paired baseline) on cold-start recommendation, NDCG@10;
- overlapping users: ``overlap_cdr.json``, the best transfer arm against the best baseline arm (popularity, ItemKNN,
  EASE, TargetMF), each picked on validation per seed, warm protocol, NDCG@10;
- CATN: ``catn.json``, CATN against the item mean + source offset on the ml-100k knowledge-graph documents at eta 1,
  cold users' RMSE, the paired difference in MSE per user (lower is better); no row while ``catn.json`` has no kg
  rows.

    python benchmarks/headline.py                 # writes results/headline.md and .json
    python benchmarks/headline.py --tables_from benchmarks/results/headline.json
"""

import os
import sys

import numpy as np

from recbole_transfer.methods.sml.tables import summarise
from recbole_transfer.report import BEST, best_by_kind, markdown, paired_vs, picked_names
from recbole_transfer.stats import PairedDiff

import _common as common
import tune_transfer


def _load(results, name):
    return common.load(os.path.join(results, f"{name}.json"))["rows"]


def _diff(diff):
    return None if diff is None else {k: getattr(diff, k) for k in ("mean", "low", "high", "se", "n")}


def _elsewhere(scope, diffs, lower_is_better=False):
    """'<scope> (n): better k, worse m, within noise j' of the other settings' paired differences."""
    better = sum(d.excludes_zero and (d.mean < 0) == lower_is_better for d in diffs)
    worse = sum(d.excludes_zero for d in diffs) - better
    return f"{scope} ({len(diffs)}): better {better}, worse {worse}, within noise {len(diffs) - better - worse}"


def _mean_over_seeds(rows, arm, metric):
    """Mean over seeds of the arm's mean over the rows' targets (a macro value when there are several)."""
    seeds = sorted({r["seed"] for r in rows})
    return float(np.mean([np.mean([r[metric] for r in rows if r["arm"] == arm and r["seed"] == s]) for s in seeds]))


def layer_transfer(results):
    saved = common.load(os.path.join(results, "tune_transfer.json"))
    picks, groups = saved["picks"], tune_transfer.groups(saved["rows"])
    targets = list(dict.fromkeys(p["target"] for p in picks))
    kept = sum(p["tuned_arm"] == "none" for p in picks)
    return {
        "family": "layer transfer", "source": "tune_transfer.json",
        "data": f"ml-100k, drama → {len(targets)} genre targets, {len({p['data_seed'] for p in picks})} data seeds",
        "metric": "HR@10", "baseline": "scratch",
        "arm": f"Ray Tune pick (ASHA, 1-SE rule on validation) per data seed and target; no transfer in {kept} of "
               f"{len(picks)}",
        "baseline_value": float(np.mean([p["scratch_test"] for p in picks])),
        "arm_value": float(np.mean([p["tuned_test"] for p in picks])),
        "diff": _diff(tune_transfer.tuned_vs_scratch(picks, groups)),
        "elsewhere": _elsewhere("each target alone", [
            tune_transfer.tuned_vs_scratch([p for p in picks if p["target"] == t], groups) for t in targets]),
    }


def mmtnet(results):
    rows = _load(results, "mmtnet_transfer")
    fractions = list(dict.fromkeys(r["fraction"] for r in rows))
    chosen = [r for r in rows if r["fraction"] == fractions[0]]
    others = [paired_vs([r for r in rows if r["fraction"] == f], "drr", "none", "test_hit@10") for f in fractions[1:]]
    return {
        "family": "MMT-Net", "source": "mmtnet_transfer.json",
        "data": f"ml-100k regions, one source → {len({r['target'] for r in chosen})} sparse targets at "
                f"{round(100 * fractions[0])} %, {len({r['seed'] for r in chosen})} seeds",
        "metric": "macro HR@10", "baseline": "MMTNet scratch", "arm": "DRR (the method, declared)",
        "baseline_value": _mean_over_seeds(chosen, "none", "test_hit@10"),
        "arm_value": _mean_over_seeds(chosen, "drr", "test_hit@10"),
        "diff": _diff(paired_vs(chosen, "drr", "none", "test_hit@10")),
        "elsewhere": _elsewhere("the other sparsities", others),
    }


def sml(results):
    rows = _load(results, "sml_retraining")
    by = {s: summarise([r for r in rows if r["setting"] == s]) for s in dict.fromkeys(r["setting"] for r in rows)}
    mean = lambda setting, method: float(np.mean(by[setting][method]["ndcg@20"]))  # noqa: E731
    other = "; ".join(f"{s}: Fine-tune {mean(s, 'finetune'):.4f}, SML {mean(s, 'sml'):.4f}" for s in by if s != "ml-100k")
    return {
        "family": "SML", "source": "sml_retraining.json",
        "data": f"ml-100k, {len(by['ml-100k']['sml']['ndcg@20'])} seeds, periods evaluated online",
        "metric": "NDCG@20, test periods", "baseline": "Fine-tune", "arm": "SML (the method, declared)",
        "baseline_value": mean("ml-100k", "finetune"), "arm_value": mean("ml-100k", "sml"), "diff": None,
        "elsewhere": f"{other} (means over seeds; no interval)",
    }


def peterrec(results):
    rows = _load(results, "peterrec_transfer")
    metric_of = {r["target"]: r["metric"] for r in rows}
    task, others = "coldrec", [t for t in metric_of if t != "coldrec"]
    scoped = [r for r in rows if r["target"] == task]
    return {
        "family": "PeterRec", "source": "peterrec_transfer.json",
        "data": f"ml-100k, cold-start recommendation (task {task}), {len({r['seed'] for r in scoped})} seeds",
        "metric": metric_of[task].replace("ndcg", "NDCG"), "baseline": "PeterZero (patches, no pretraining)",
        "arm": "PeterRec serial (the default patch)",
        "baseline_value": _mean_over_seeds(scoped, "peterzero/serial", f"test_{metric_of[task]}"),
        "arm_value": _mean_over_seeds(scoped, "peterrec/serial", f"test_{metric_of[task]}"),
        "diff": _diff(paired_vs(rows, "peterrec/serial", "peterzero/serial", f"test_{metric_of[task]}", [task])),
        "elsewhere": _elsewhere("the profile tasks", [
            paired_vs(rows, "peterrec/serial", "peterzero/serial", f"test_{metric_of[t]}", [t]) for t in others]),
    }


def _best_pair(rows, task, setting):
    """The overlap benchmark's rule: in one setting, the best transfer arm and the best baseline arm, each picked on
    validation per seed; (picks, transfer minus baseline paired per user: NDCG@10, or MSE per user on ratings)."""
    scoped = [r for r in rows if r["task"] == task and r["target"] == setting]
    picks = best_by_kind(scoped, lower=lambda r: task == "rating")
    metric = "test_mse" if task == "rating" else "test_ndcg@10"
    return picks, paired_vs(picks, BEST["transfer"], BEST["baseline"], metric, [setting])


def overlap(results):
    rows = _load(results, "overlap_cdr")
    picks, diff = _best_pair(rows, "ranking", "warm")
    others = [(task, _best_pair(rows, task, setting)[1]) for task in ("ranking", "rating")
              for setting in dict.fromkeys(r["target"] for r in rows if r["task"] == task) if (task, setting) != ("ranking", "warm")]
    counts = [_elsewhere(f"{task}, other settings", [d for t, d in others if t == task and d is not None], task == "rating")
              for task in ("ranking", "rating")]
    return {
        "family": "overlapping users (CMF, EMCDR, PTUPCDR, CrossEASE, CrossItemKNN)", "source": "overlap_cdr.json",
        "data": f"ml-100k, Drama → non-Drama, shared users, warm protocol, {len({r['seed'] for r in picks})} data seeds",
        "metric": "NDCG@10", "baseline": f"best baseline arm on validation ({picked_names([r for r in picks if r['arm'] == BEST['baseline']])})",
        "arm": f"best transfer arm on validation ({picked_names([r for r in picks if r['arm'] == BEST['transfer']])})",
        "baseline_value": _mean_over_seeds(picks, BEST["baseline"], "test_ndcg@10"),
        "arm_value": _mean_over_seeds(picks, BEST["transfer"], "test_ndcg@10"),
        "diff": _diff(diff),
        "elsewhere": "; ".join(counts) + " (rating: MSE per user, the best rating baseline on validation)",
    }


def catn(results):
    rows = [r for r in _load(results, "catn") if r["setting"] != "planted_strong_shuffled"]  # a control, not a setting
    etas = sorted({r["eta"] for r in rows}, reverse=True)
    kg = [r for r in rows if r["setting"] == "kg" and r["eta"] == etas[0]]
    if not kg:  # the rule's setting is not in the results file (not rerun since CATN's recipe changed): no row
        return None
    others = [paired_vs([r for r in rows if r["setting"] == s], "CATN", "item_mean_offset", "test_mse", [f"{s} eta={e:g}"])
              for s in dict.fromkeys(r["setting"] for r in rows) for e in etas if (s, e) != ("kg", etas[0])]
    return {
        "family": "CATN", "source": "catn.json",
        "data": f"ml-100k knowledge-graph documents, cold users, eta {etas[0]:g}, {len({r['seed'] for r in kg})} data seeds",
        "metric": "RMSE; paired: MSE per user (lower is better)", "baseline": "item mean + source offset",
        "arm": "CATN (the method, declared keys)",
        "baseline_value": _mean_over_seeds(kg, "item_mean_offset", "rmse"), "arm_value": _mean_over_seeds(kg, "CATN", "rmse"),
        "diff": _diff(paired_vs([r for r in rows if r["setting"] == "kg"], "CATN", "item_mean_offset", "test_mse",
                                [f"kg eta={etas[0]:g}"])),
        "elsewhere": _elsewhere("kg at the other etas and the planted settings", [d for d in others if d], True),
    }


FAMILIES = (layer_transfer, mmtnet, sml, peterrec, overlap, catn)


def headline_rows(results=common.RESULTS):
    return [row for row in (family(results) for family in FAMILIES) if row is not None]


def report(saved):
    """The results file's Markdown, from the saved rows alone."""
    lines = []
    for row in saved["rows"]:
        diff = PairedDiff(**row["diff"]) if row["diff"] else None
        cell = diff.cell() if diff else f"{row['arm_value'] - row['baseline_value']:+.4f} (means; no paired interval)"
        noise = "not tested" if diff is None else "no" if diff.excludes_zero else "yes"
        lines.append([row["family"], row["data"], row["metric"], row["baseline"], row["arm"], f"{row['baseline_value']:.4f}",
                      f"{row['arm_value']:.4f}", cell, noise, row["elsewhere"], f"`{row['source']}`"])
    return (
        "# Headline: one row per method family\n\n"
        "Built by `python benchmarks/headline.py` from the results JSON files alone (no training). Per family, one "
        "comparison of its benchmark, chosen by a fixed rule: the ml-100k setting, the primary metric, the baseline the "
        "benchmark compares against, and the transfer arm chosen on validation or declared before the run (never the "
        "test-selected oracle). Test values are means over seeds. The paired difference (transfer minus baseline, each "
        "user's difference averaged over the seeds that tested her, targets as strata) and its bootstrap 95 % interval "
        "over users are the benchmark's own: `*` marks an interval that excludes 0, \"within noise\" one that includes "
        "it. The column \"same comparison, other settings\" counts how the same arm and baseline came out in the "
        "benchmark's other settings (better or worse: the interval excludes 0). The results files have the full "
        "tables.\n\n"
        + markdown(["family", "data / scenario", "metric", "baseline", "transfer arm", "baseline (test)", "transfer (test)",
                    "transfer - baseline, paired [95% CI]", "within noise", "same comparison, other settings", "from"],
                   lines) + "\n"
    )


def main(argv=None):
    args = common.parse(common.parser("headline", __doc__), argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    saved = {"run": common.record(args.threads), "rows": headline_rows()}
    common.write(args.out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
