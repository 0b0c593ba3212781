"""Benchmark: PeterRec and its baselines on the bundled ml-100k (paper Table 3 shape).

Tasks (recbole_transfer/methods/peterrec/scenario.yaml): cold-start Comedy recommendation (NDCG@10, HR@10),
gender / age / occupation prediction (accuracy) and age with 10% of training users labelled. Methods:
popularity (majority label), FineCLS, FineLast, FineAll, PeterRec serial and parallel, PeterZero.
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

import argparse
import json
import os
import platform
import sys
import time
from collections import defaultdict

import numpy as np
import torch

from recbole_transfer.logs import quiet_logging
from recbole_transfer.methods.peterrec.strategy import PATCH_ARMS
from recbole_transfer.pipeline.scenario import run_scenario
from recbole_transfer.registry import get_method
from recbole_transfer.methods.peterrec.tables import method_paired_table, method_table
from recbole_transfer.report import forest_plot, markdown, mean_std, paired_vs

PETERREC_SCENARIO = get_method("peterrec").scenario

HERE = os.path.dirname(os.path.abspath(__file__))


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


def tables(rows):
    """The result tables of ``rows`` (every seed), without the wall times."""
    return [
        method_table(rows),
        method_paired_table(rows),
        "PeterRec minus each reference, in points (100 x metric difference), paired [bootstrap 95 % interval], "
        "* = excludes 0:\n\n" + goals_table(rows),
        "All test metrics:\n\n" + extra_metrics_table(rows),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="2020 2021 2022")
    parser.add_argument("--targets", default=None, help="default: every task of the scenario")
    parser.add_argument("--arms", default=" ".join(PATCH_ARMS))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "peterrec_transfer"))
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest for these small models)")
    parser.add_argument("--tables_from", default=None, help="print the tables of a saved <out>.json (no training, nothing written)")
    args = parser.parse_args()
    quiet_logging()
    if args.tables_from:  # a rebuild prints; only the measuring command writes the results files
        with open(args.tables_from, encoding="utf-8") as f:
            print("\n\n".join(tables(json.load(f))))
        return
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split()]
    targets = args.targets.split() if args.targets else None
    arms = args.arms.split()
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)

    rows, seconds = [], {}
    for seed in seeds:
        cache = f"{args.out}.seed{seed}.json"
        if os.path.isfile(cache):
            with open(cache, encoding="utf-8") as f:
                saved = json.load(f)
            if saved["arms"] == arms and (targets is None or saved["targets"] == targets):
                rows += saved["rows"]
                seconds[seed] = saved["seconds"]
                print(f"seed {seed}: reused {cache}", flush=True)
                continue
        start = time.time()
        seed_rows = run_scenario(
            "PeterRec", None, targets, [PETERREC_SCENARIO],
            {"seed": seed, "num_threads": args.threads},
            arms=arms, seeds=[seed], progress=lambda m: print(m, flush=True),
        )
        for r in seed_rows:
            r.pop("valid_curve", None)
        seconds[seed] = time.time() - start
        with open(cache, "w", encoding="utf-8") as f:
            json.dump({"arms": arms, "targets": targets, "rows": seed_rows, "seconds": seconds[seed]}, f)
        rows += seed_rows

    text = "\n\n".join(tables(rows) + [
        "Wall time per seed (pretraining included): "
        + ", ".join(f"{s}: {seconds[s]:.0f}s" for s in seeds)
        + f". Machine: {platform.processor() or platform.machine()}, torch threads {torch.get_num_threads()}, "
        f"python {sys.version.split()[0]}.",
    ])
    print("\n" + text)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("Command: `OMP_NUM_THREADS=1 python benchmarks/peterrec_transfer.py`\n\n" + text + "\n")
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(rows, f)
    forest_plot(rows, args.out + ".png", None)  # each task's own metric
    print(f"\nwrote {args.out}.md, {args.out}.json and {args.out}.png")


if __name__ == "__main__":
    main()
