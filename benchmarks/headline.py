"""Headline: one row per method family, built from the other benchmarks' results JSON files (no training).

Each row is one comparison, chosen by a rule fixed before reading the numbers: the benchmark's ml-100k setting, its
primary metric, and the best transfer arm against the best baseline arm (popularity, ItemKNN, EASE, SLIM, the
family's scratch model, ...), each picked on VALIDATION per seed and target (never the test-selected oracle), paired
per user on test (targets as strata). A second column keeps the family's own comparison: its method (declared, or
Ray Tune's pick) against its own scratch model. The values and the paired differences with their bootstrap 95 %
intervals are computed as the benchmarks compute them, with the same functions (``recbole_transfer.stats``,
``recbole_transfer.report``, the benchmark scripts' helpers); "within noise" when the interval includes 0. The last
column counts how best transfer against best baseline came out in the benchmark's other settings (targets,
sparsities, tasks, etas), so that a row does not stand for more than it shows.

- layer transfer: ``layer_transfer.json`` (config-1..7 against scratch, Pop, ItemKNN, EASE), the 5 genre targets;
  its own comparison: ``tune_transfer.json``, the Ray Tune pick (ASHA, 1-SE rule on validation) against scratch;
- MMT-Net: ``mmtnet_transfer.json``, the 6 regions at the first (the scenario's) sparsity, macro HR@10; the
  frozen-random control is never a pick (its kind comes from the method's registry); own: DRR against scratch;
- SML: ``sml_retraining.json`` on ml-100k, NDCG@20 over the test periods (each method picked on the mean of the
  validation periods); own: SML against Fine-tune;
- PeterRec: ``peterrec_transfer.json``, cold-start recommendation, NDCG@10; own: PeterRec serial (the default
  patch) against PeterZero;
- overlapping users: ``overlap_cdr.json``, warm protocol, NDCG@10; own: the best transfer pick against TargetMF;
- CATN: ``catn.json``, CATN against the item mean + source offset on the ml-100k knowledge-graph documents at eta 1,
  cold users' RMSE, the paired difference in MSE per user (lower is better); no row while ``catn.json`` has no kg
  rows.

    python benchmarks/headline.py                 # writes results/headline.md and .json
    python benchmarks/headline.py --tables_from benchmarks/results/headline.json
"""

import os
import sys

import numpy as np

from recbole_transfer.methods.sml.retraining import RETRAIN_METHODS
from recbole_transfer.methods.sml.tables import arm_rows
from recbole_transfer.registry import get_method
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
    diffs = [d for d in diffs if d is not None]
    better = sum(d.excludes_zero and (d.mean < 0) == lower_is_better for d in diffs)
    worse = sum(d.excludes_zero for d in diffs) - better
    return f"{scope} ({len(diffs)}): better {better}, worse {worse}, within noise {len(diffs) - better - worse}"


def _mean_over_seeds(rows, arm, metric):
    """Mean over seeds of the arm's mean over the rows' targets (a macro value when there are several)."""
    seeds = sorted({r["seed"] for r in rows if r["arm"] == arm})
    return float(np.mean([np.mean([r[metric] for r in rows if r["arm"] == arm and r["seed"] == s]) for s in seeds]))


def _best(rows, metric, lower=False):
    """Best transfer against best baseline, each picked on validation per (target, seed; ``lower``: the lowest
    validation value is best): (picks, the paired difference transfer minus baseline, the rows' targets as strata)."""
    picks = best_by_kind(rows, lower=lambda r: lower)
    return picks, paired_vs(picks, BEST["transfer"], BEST["baseline"], metric, list(dict.fromkeys(r["target"] for r in rows)))


def _own(text, diff=None, means=None):
    """The family's own comparison (its method against its own scratch model): text and paired difference, or the
    difference of the means where the benchmark has no paired values."""
    return {"text": text, "diff": _diff(diff), "means": means}


def _row(family, source, data, metric, key, picks, diff, own, elsewhere):
    """The headline row; None when the results file has no pair to pick (an older file, rows without their kind or
    per-user values: rerun its benchmark)."""
    if {r["arm"] for r in picks} != set(BEST.values()):
        return None
    named = lambda kind: picked_names([r for r in picks if r["arm"] == BEST[kind]])  # noqa: E731
    return {
        "family": family, "source": source, "data": data, "metric": metric,
        "baseline": f"best baseline on validation ({named('baseline')})",
        "arm": f"best transfer on validation ({named('transfer')})",
        "baseline_value": _mean_over_seeds(picks, BEST["baseline"], key),
        "arm_value": _mean_over_seeds(picks, BEST["transfer"], key),
        "diff": _diff(diff), "own": own, "elsewhere": elsewhere,
    }


def layer_transfer(results):
    rows = _load(results, "layer_transfer")
    targets = list(dict.fromkeys(r["target"] for r in rows))
    picks, diff = _best(rows, "test_hit@10")
    saved = common.load(os.path.join(results, "tune_transfer.json"))
    tuned, groups = saved["picks"], tune_transfer.groups(saved["rows"])
    kept = sum(p["tuned_arm"] == "none" for p in tuned)
    own = _own(f"Ray Tune pick (ASHA, 1-SE rule; no transfer in {kept} of {len(tuned)}) - scratch, "
               f"`tune_transfer.json`", tune_transfer.tuned_vs_scratch(tuned, groups))
    return _row("layer transfer", "layer_transfer.json",
                f"ml-100k, drama → {len(targets)} genre targets, {len({r['seed'] for r in rows})} data seeds", "HR@10",
                "test_hit@10", picks, diff, own,
                _elsewhere("each target alone", [_best([r for r in rows if r["target"] == t], "test_hit@10")[1]
                                                 for t in targets]))


def mmtnet(results):
    controls = get_method("mmtnet").controls  # an older results file labels the control 'transfer'
    rows = [{**r, "kind": "control"} if r["arm"] in controls else r for r in _load(results, "mmtnet_transfer")]
    fractions = list(dict.fromkeys(r["fraction"] for r in rows))
    chosen = [r for r in rows if r["fraction"] == fractions[0]]
    picks, diff = _best(chosen, "test_hit@10")
    return _row("MMT-Net", "mmtnet_transfer.json",
                f"ml-100k regions, one source → {len({r['target'] for r in chosen})} sparse targets at "
                f"{round(100 * fractions[0])} %, {len({r['seed'] for r in chosen})} seeds", "macro HR@10", "test_hit@10",
                picks, diff, _own("DRR - MMTNet scratch", paired_vs(chosen, "drr", "none", "test_hit@10")),
                _elsewhere("the other sparsities", [_best([r for r in rows if r["fraction"] == f], "test_hit@10")[1]
                                                    for f in fractions[1:]]))


def sml(results):
    rows = _load(results, "sml_retraining")
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    arms = {s: arm_rows([{**r, "target": s} for r in rows if r["setting"] == s and r["method"] in RETRAIN_METHODS],
                        "ndcg@20") for s in settings}  # the benchmark's rule: the ablations are neither kind
    picks, diff = _best(arms["ml-100k"], "test_ndcg@20")
    return _row("SML", "sml_retraining.json",
                f"ml-100k, {len({r['seed'] for r in arms['ml-100k']})} seeds, periods evaluated online",
                "NDCG@20, test periods", "test_ndcg@20", picks, diff,
                _own("SML - Fine-tune", paired_vs(arms["ml-100k"], "SML", "Fine-tune", "test_ndcg@20")),
                _elsewhere("the planted drift", [_best(arms[s], "test_ndcg@20")[1] for s in settings if s != "ml-100k"]))


def peterrec(results):
    rows = _load(results, "peterrec_transfer")
    metric_of = {r["target"]: r["metric"] for r in rows}
    task, others = "coldrec", [t for t in metric_of if t != "coldrec"]
    scoped = [r for r in rows if r["target"] == task]
    picks, diff = _best(scoped, f"test_{metric_of[task]}")
    return _row("PeterRec", "peterrec_transfer.json",
                f"ml-100k, cold-start recommendation (task {task}), {len({r['seed'] for r in scoped})} seeds",
                metric_of[task].replace("ndcg", "NDCG"), f"test_{metric_of[task]}", picks, diff,
                _own("PeterRec serial - PeterZero", paired_vs(scoped, "peterrec/serial", "peterzero/serial",
                                                               f"test_{metric_of[task]}")),
                _elsewhere("the profile tasks", [_best([r for r in rows if r["target"] == t], f"test_{metric_of[t]}")[1]
                                                 for t in others]))


def overlap(results):
    rows = _load(results, "overlap_cdr")
    scoped = lambda task, setting: [r for r in rows if r["task"] == task and r["target"] == setting]  # noqa: E731
    warm = scoped("ranking", "warm")
    picks, diff = _best(warm, "test_ndcg@10")
    others = [(task, _best(scoped(task, setting), "test_mse" if task == "rating" else "test_ndcg@10", task == "rating")[1])
              for task in ("ranking", "rating") for setting in dict.fromkeys(r["target"] for r in rows if r["task"] == task)
              if (task, setting) != ("ranking", "warm")]
    counts = [_elsewhere(f"{task}, other settings", [d for t, d in others if t == task], task == "rating")
              for task in ("ranking", "rating")]
    own = _own("best transfer on validation - TargetMF",
               paired_vs(picks + [r for r in warm if r["arm"] == "TargetMF"], BEST["transfer"], "TargetMF", "test_ndcg@10"))
    return _row("overlapping users (CMF, EMCDR, PTUPCDR, CrossEASE, CrossItemKNN)", "overlap_cdr.json",
                f"ml-100k, Drama → non-Drama, shared users, warm protocol, {len({r['seed'] for r in picks})} data seeds",
                "NDCG@10", "test_ndcg@10", picks, diff, own,
                "; ".join(counts) + " (rating: MSE per user, the best rating baseline on validation)")


def catn(results):
    rows = [r for r in _load(results, "catn") if not r["setting"].endswith("_shuffled")]  # controls, not settings
    etas = sorted({r["eta"] for r in rows}, reverse=True)
    kg = [r for r in rows if r["setting"] == "kg" and r["eta"] == etas[0]]
    if not kg:  # the rule's setting is not in the results file (not rerun since CATN's recipe changed): no row
        return None
    others = [paired_vs([r for r in rows if r["setting"] == s], "CATN", "item_mean_offset", "test_mse", [f"{s} eta={e:g}"])
              for s in dict.fromkeys(r["setting"] for r in rows) for e in etas if (s, e) != ("kg", etas[0])]
    diff = paired_vs([r for r in rows if r["setting"] == "kg"], "CATN", "item_mean_offset", "test_mse", [f"kg eta={etas[0]:g}"])
    return {
        "family": "CATN", "source": "catn.json",
        "data": f"ml-100k knowledge-graph documents, cold users, eta {etas[0]:g}, {len({r.get('data_seed', r['seed']) for r in kg})} data seeds x "
                f"{len({r['seed'] for r in kg}) // len({r.get('data_seed', r['seed']) for r in kg})} training seeds",
        "metric": "RMSE; paired: MSE per user (lower is better)", "baseline": "item mean + source offset",
        "arm": "CATN (the method, declared keys)",
        "baseline_value": _mean_over_seeds(kg, "item_mean_offset", "rmse"), "arm_value": _mean_over_seeds(kg, "CATN", "rmse"),
        "diff": _diff(diff), "own": _own("-"),
        "elsewhere": _elsewhere("kg at the other etas and the planted settings", others, True),
    }


FAMILIES = (layer_transfer, mmtnet, sml, peterrec, overlap, catn)


def headline_rows(results=common.RESULTS):
    return [row for row in (family(results) for family in FAMILIES) if row is not None]


def _own_cell(own):
    if own["diff"]:
        return f"{own['text']}: {PairedDiff(**own['diff']).cell()}"
    return own["text"] if own["means"] is None else f"{own['text']}: {own['means']:+.4f} (means)"


def report(saved):
    """The results file's Markdown, from the saved rows alone."""
    lines = []
    for row in saved["rows"]:
        diff = PairedDiff(**row["diff"]) if row["diff"] else None
        cell = diff.cell() if diff else f"{row['arm_value'] - row['baseline_value']:+.4f} (means; no paired interval)"
        noise = "not tested" if diff is None else "no" if diff.excludes_zero else "yes"
        lines.append([row["family"], row["data"], row["metric"], row["baseline"], row["arm"], f"{row['baseline_value']:.4f}",
                      f"{row['arm_value']:.4f}", cell, noise, _own_cell(row["own"]), row["elsewhere"], f"`{row['source']}`"])
    return (
        "# Headline: one row per method family\n\n"
        "Built by `python benchmarks/headline.py` from the results JSON files alone (no training). Per family, one "
        "comparison of its benchmark, chosen by a fixed rule: the ml-100k setting, the primary metric, and the best "
        "transfer arm against the best baseline arm (popularity, ItemKNN, EASE, SLIM, the family's scratch model, ...), "
        "each picked on validation per seed and target (never the test-selected oracle). Test values are means over "
        "seeds (over targets, then seeds, where there are several). The paired difference (transfer minus baseline, "
        "each user's difference averaged over the seeds that tested her, targets as strata) and its bootstrap 95 % "
        "interval over users are computed as the benchmarks compute them: `*` marks an interval that excludes 0, "
        "\"within noise\" one that includes it. \"The family's own comparison\" is its method against its own scratch "
        "model, paired the same way. The column \"best vs best, other settings\" counts how best transfer against best "
        "baseline came out in the benchmark's other settings (better or worse: the interval excludes 0). The value "
        "columns and the paired difference weigh differently where rows hold unequal numbers of users (SML: the columns "
        "average periods, the difference users), so they need not agree."
        + (" CATN's row compares CATN with the item mean + source offset." if any(r["family"] == "CATN" for r in saved["rows"])
           else "") + " The results files have the full tables.\n\n"
        + markdown(["family", "data / scenario", "metric", "baseline", "transfer arm", "baseline (test)", "transfer (test)",
                    "transfer - baseline, paired [95% CI]", "within noise", "the family's own comparison",
                    "best vs best, other settings", "from"],
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
