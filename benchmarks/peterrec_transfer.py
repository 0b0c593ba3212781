"""Benchmark: PeterRec and its baselines on the bundled ml-100k (paper Table 3 shape).

Tasks (recbole_transfer/methods/peterrec/scenario.yaml): cold-start Comedy recommendation (NDCG@10, HR@10),
gender / age / occupation prediction (accuracy) and age with 10% of training users labelled. Methods:
popularity (majority label), bag of source items (logistic regression), FineCLS, FineLast, FineAll, PeterRec
serial and parallel, PeterZero; last, the best transfer arm against the best baseline arm per task (each picked
on validation per seed, paired on test).
Per seed: NextItNet is pretrained on the source sequences under that seed, and every task's USER split is
drawn under that seed (the replicate's data seed: every method of a seed is scored on the same test users),
so the spread covers pretraining, split and fine-tuning. Beside the mean ± std table: each method's paired
difference to PeterZero per task, each user's difference averaged over the seeds that tested her, with a 95 %
interval. One torch thread
(``--threads``).

    OMP_NUM_THREADS=1 python benchmarks/peterrec_transfer.py                  # 3 seeds
    OMP_NUM_THREADS=1 python benchmarks/peterrec_transfer.py --seeds 2020 --targets "gender age" --out /tmp/q
    python benchmarks/peterrec_transfer.py --tables_from benchmarks/results/peterrec_transfer.json

Finished seeds are kept in <out>.seed<N>.json and reused by a rerun (delete them to measure again).
"""

import glob
import json
import os
import sys
import time
from collections import defaultdict

import numpy as np

from recbole_transfer.methods.peterrec.strategy import PATCH_ARMS
from recbole_transfer.pipeline.scenario import run_scenario
from recbole_transfer.registry import get_method
from recbole_transfer.methods.peterrec.tables import method_paired_table, method_table
from recbole_transfer.report import best_baseline_table, forest_plot, markdown, mean_std, paired_vs

import _common as common

PETERREC_SCENARIO = get_method("peterrec").scenario


def goals_table(rows):
    """Per task: PeterRec (serial, parallel) minus FineAll, PeterZero, FineCLS and popularity, in points (100 x the
    task metric): the paired difference (each user's difference averaged over the seeds that tested her) with
    its bootstrap 95 % interval, * = excludes 0."""
    tasks = list(dict.fromkeys(r["target"] for r in rows))
    metric_of = {r["target"]: r["metric"] for r in rows}
    refs = ("fineall", "peterzero/serial", "finecls", "pop")
    lines = []
    for task in tasks:
        metric = metric_of[task]
        for arm in ("peterrec/serial", "peterrec/parallel"):
            cells = []
            for ref in refs:
                diff = paired_vs(rows, arm, ref, f"test_{metric}", [task])
                cells.append("-" if diff is None else
                             f"{100 * diff.mean:+.2f} [{100 * diff.low:+.2f}, {100 * diff.high:+.2f}]{'*' if diff.excludes_zero else ''}")
            lines.append([task, metric, arm] + cells)
    return markdown(["task", "metric", "PeterRec variant", "vs FineAll (points)", "vs PeterZero", "vs FineCLS",
                     "vs popularity"], lines)


def extra_metrics_table(rows):
    """Every test metric of every task (e.g. HR@10 beside NDCG@10 for cold-start recommendation)."""
    groups = defaultdict(list)
    for r in rows:
        groups[(r["target"], r["arm"])].append(r)
    lines = []
    for (task, arm), group in groups.items():
        keys = [k for k in group[0] if k.startswith("test_") and "@" in k]  # the metrics, not the per-user lists
        cells = ", ".join(f"{k[5:]} {mean_std([g[k] for g in group])}" for k in keys)
        lines.append([task, arm, cells, f"{np.mean([g['epochs'] for g in group]):.1f}",
                      f"{np.mean([g['seconds'] for g in group]):.1f}"])
    return markdown(["task", "method", "test metrics (mean ± std)", "epochs", "fit s"], lines)


def report(saved, path=None):
    """The results file's Markdown, from the saved rows and run record alone (an older results file at ``path``
    kept the wall times only in its per-seed parts beside it)."""
    rows, run = saved["rows"], saved["run"]
    seconds = run.get("seconds") or part_seconds(path)
    seeds = sorted({r["seed"] for r in rows})
    return "\n\n".join([
        "Command: `OMP_NUM_THREADS=1 python benchmarks/peterrec_transfer.py`",
        method_table(rows),
        method_paired_table(rows),
        "PeterRec minus each reference, in points (100 x metric difference), paired [bootstrap 95 % interval], "
        "* = excludes 0:\n\n" + goals_table(rows),
        best_baseline_table(rows) or "Best transfer arm vs best baseline arm: the rows lack their kind (an older "
        "results file); rerun the benchmark.",
        "All test metrics:\n\n" + extra_metrics_table(rows),
        "Wall time per seed (pretraining included): "
        + ", ".join(f"{s}: {common.number(seconds.get(str(s)))}s" for s in seeds)
        + f". Machine: {run['processor']}, torch threads {run['threads']}, python {run['python']}.",
    ]) + "\n"


def seed_part(out, seed):
    return f"{out}.seed{seed}.json"


def part_seconds(path):
    """{seed: wall time} kept in the per-seed parts beside the results file ``path``."""
    seconds = {}
    for name in glob.glob(seed_part(os.path.splitext(path)[0], "*")) if path else []:
        with open(name, encoding="utf-8") as f:
            seconds[name.rsplit(".seed", 1)[1][:-len(".json")]] = json.load(f)["seconds"]
    return seconds


def main(argv=None):
    p = common.parser("peterrec_transfer", __doc__, seeds=[2020, 2021, 2022])
    p.add_argument("--targets", default=None, help="default: every task of the scenario")
    p.add_argument("--arms", default=" ".join(PATCH_ARMS))
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(lambda saved: report(saved, args.tables_from), args.tables_from)
    common.measuring(args.threads)
    targets = args.targets.split() if args.targets else None
    arms = args.arms.split()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    progress = lambda m: print(m, flush=True)  # noqa: E731
    rows, seconds = [], {}
    for seed in args.seeds:
        def measure():
            start = time.time()
            seed_rows = run_scenario("PeterRec", None, targets, [PETERREC_SCENARIO], {"seed": seed, "num_threads": args.threads},
                                     arms=arms, seeds=[seed], progress=progress)
            for r in seed_rows:
                r.pop("valid_curve", None)
            return {"arms": arms, "targets": targets, "rows": common.without(seed_rows), "seconds": time.time() - start}

        kept = common.part(seed_part(args.out, seed), measure, progress,
                           reuse=lambda kept: kept["arms"] == arms and (targets is None or kept["targets"] == targets))
        rows += kept["rows"]
        seconds[str(seed)] = kept["seconds"]
    saved = {"run": common.record(args.threads, seconds=seconds), "rows": rows}
    common.write(args.out, report(saved), saved)
    forest_plot(rows, args.out + ".png", None)  # each task's own metric
    return 0


if __name__ == "__main__":
    sys.exit(main())
