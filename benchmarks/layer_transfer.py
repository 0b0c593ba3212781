"""Benchmark: layer-freezing transfer on the bundled ml-100k (the default scenario).

5 sparse targets x 8 arms (config-1..7 + scratch) x 3 seeds. Prints and writes under
benchmarks/results/: mean HR@10 / NDCG@10 per target and arm, the gain tables (paper Table 3 shape),
and the time to reach scratch's best validation HR@10 (best transfer arm / scratch).

    OMP_NUM_THREADS=1 python benchmarks/layer_transfer.py            # ~6 min on one core
    OMP_NUM_THREADS=1 python benchmarks/layer_transfer.py --seeds 2020 --out /tmp/quick
"""

import argparse
import json
import os
import platform
import sys
import time
import warnings
from collections import defaultdict

import numpy as np
import torch

from recbole_transfer.scenario import DEFAULT_SCENARIO, gain_table, metric_table, run_scenario
from recbole_transfer.transfer import NO_TRANSFER

HERE = os.path.dirname(os.path.abspath(__file__))


def first_time_reaching(curve, level):
    for _epoch, seconds, score in curve:
        if score >= level:
            return seconds
    return None


def time_to_reach_table(rows):
    """Per target: time for the best transfer arm to reach scratch's best valid HR@10, over scratch's."""
    by_key = {(r["seed"], r["target"], r["arm"]): r for r in rows}
    test_means = defaultdict(list)
    for r in rows:
        test_means[(r["target"], r["arm"])].append(r["test_hit@10"])
    targets = list(dict.fromkeys(r["target"] for r in rows))
    seeds = sorted(set(r["seed"] for r in rows))
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != NO_TRANSFER]
    lines = ["| target | best transfer arm | scratch: s to its best valid HR@10 | best arm: s to that level | ratio | "
             "fastest arm | its ratio | runs never reaching |", "|---|---|---|---|---|---|---|---|"]
    all_ratios = []
    for target in targets:
        best_arm = max(arms, key=lambda a: np.mean(test_means[(target, a)]))
        scratch_t, arm_t, never, fastest = [], [], 0, defaultdict(list)
        for seed in seeds:
            scratch = by_key[(seed, target, NO_TRANSFER)]
            level = max(s for _, _, s in scratch["valid_curve"])
            t_s = first_time_reaching(scratch["valid_curve"], level)
            scratch_t.append(t_s)
            for arm in arms:
                t_a = first_time_reaching(by_key[(seed, target, arm)]["valid_curve"], level)
                fastest[arm].append(t_a / t_s if t_a is not None else np.inf)
            t_best = first_time_reaching(by_key[(seed, target, best_arm)]["valid_curve"], level)
            if t_best is None:
                never += 1
            else:
                arm_t.append(t_best)
        ratio = (np.mean(arm_t) / np.mean(scratch_t)) if arm_t else float("inf")
        all_ratios.append(ratio)
        fast_arm = min(arms, key=lambda a: np.mean(fastest[a]))
        fast_ratio = np.mean(fastest[fast_arm])
        lines.append(
            f"| {target} | {best_arm} | {np.mean(scratch_t):.2f} | "
            f"{np.mean(arm_t):.2f}" if arm_t else f"| {target} | {best_arm} | {np.mean(scratch_t):.2f} | never"
        )
        lines[-1] += f" | {ratio:.2f} | {fast_arm} | {fast_ratio:.2f} | {never}/{len(seeds)} |"
    finite = [r for r in all_ratios if np.isfinite(r)]
    summary = f"median ratio (best transfer arm / scratch) over targets: {np.median(finite):.2f}" if finite else ""
    return "\n".join(lines) + ("\n\n" + summary if summary else "")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "layer_transfer"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    start = time.time()
    rows = run_scenario(
        None, None, None, [DEFAULT_SCENARIO], {"num_threads": args.threads}, seeds=args.seeds,
        progress=lambda m: print(m, flush=True),
    )
    header = (
        f"# Layer-transfer benchmark (ml-100k default scenario)\n\n"
        f"command: `OMP_NUM_THREADS={args.threads} python benchmarks/layer_transfer.py --seeds {' '.join(map(str, args.seeds))}`  \n"
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, {args.threads} torch thread(s); "
        f"total wall time {time.time() - start:.0f}s\n"
    )
    sections = [
        header,
        "## Gain over scratch, HR@10\n\n" + gain_table(rows),
        "## Gain over scratch, NDCG@10\n\n" + gain_table(rows, metric="test_ndcg@10"),
        "## Mean ± std over seeds (test)\n\n" + metric_table(rows),
        "## Time to reach scratch's best validation HR@10 (fit wall time, seconds)\n\n" + time_to_reach_table(rows),
    ]
    text = "\n\n".join(sections) + "\n"
    print("\n" + text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    print(f"wrote {args.out}.md and {args.out}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
