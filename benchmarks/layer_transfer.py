"""Benchmark: layer-freezing transfer on the bundled ml-100k (the default scenario).

5 sparse targets x 11 arms (config-1..7, scratch, and RecBole's Pop, ItemKNN and EASE on the target's training rows,
at their default keys) x 3 seeds; each seed is a replicate's data seed (split,
thinning, candidates: the same for every arm) and training seed. Prints and writes under
benchmarks/results/: the gain tables (paper Table 3 shape, with the validation-selected arm and the
test-selected oracle), every arm's paired difference to scratch with its 95 % interval, mean HR@10 / NDCG@10
per target and arm, the best transfer arm against the best baseline (each picked on validation, paired),
relatedness vs gain, and the time to reach scratch's best validation HR@10.

    OMP_NUM_THREADS=1 python benchmarks/layer_transfer.py            # ~6 min on one core
    OMP_NUM_THREADS=1 python benchmarks/layer_transfer.py --seeds 2020 --out /tmp/quick
    python benchmarks/layer_transfer.py --tables_from benchmarks/results/layer_transfer.json
"""

import sys
import time
from collections import defaultdict

import numpy as np

from recbole_transfer.pipeline.scenario import run_scenario
from recbole_transfer.registry import get_method
from recbole_transfer.methods.layer_transfer.tables import gain_table
from recbole_transfer.report import (best_baseline_table, first_time_reaching, forest_plot, markdown, metric_table,
                                     paired_table, validation_picks)
from recbole_transfer.transfer import NO_TRANSFER

import _common as common

DEFAULT_SCENARIO = get_method("layer_transfer").scenario


def time_to_reach_table(rows):
    """Per target: fit time for transfer arms to reach scratch's best valid HR@10, over scratch's own time.

    Per seed, ratio = (seconds until the arm's validation HR@10 first reaches scratch's best) / (seconds
    until scratch reaches it); infinite when the arm never reaches it. Reported: the median over seeds for
    the validation-selected arm (the most frequent pick of its seeds) and for the fastest arm (lowest median
    ratio; chosen on these curves, so an optimistic pick).
    """
    by_key = {(r["seed"], r["target"], r["arm"]): r for r in rows}
    targets = list(dict.fromkeys(r["target"] for r in rows))
    seeds = sorted(set(r["seed"] for r in rows))
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != NO_TRANSFER]
    header = ["target", "scratch: s to its best valid HR@10", "valid-selected arm", "its median ratio", "reached",
              "fastest arm", "its median ratio", "reached"]
    lines = []
    best_ratios = []
    for target in targets:
        ratios, scratch_t = {}, []
        for seed in seeds:
            curve = by_key[(seed, target, NO_TRANSFER)]["valid_curve"]
            level = max(s for _, _, s in curve)
            t_s = first_time_reaching(curve, level)
            scratch_t.append(t_s)
            for arm in arms:
                t_a = first_time_reaching(by_key[(seed, target, arm)]["valid_curve"], level)
                ratios.setdefault(arm, []).append(t_a / t_s if t_a is not None else np.inf)
        picked = [p["arm"] for p in validation_picks(rows, target).values() if p["arm"] != NO_TRANSFER]
        best_arm = max(dict.fromkeys(picked), key=picked.count) if picked else None
        fast_arm = min(arms, key=lambda a: np.median(ratios[a]))

        def cell(arm):
            finite = sum(np.isfinite(ratios[arm]))
            return [arm, f"{np.median(ratios[arm]):.2f}", f"{finite}/{len(seeds)}"]

        if best_arm is not None:
            best_ratios.append(np.median(ratios[best_arm]))
        shown = cell(best_arm) if best_arm is not None else ["none (no transfer picked)", "-", "-"]
        lines.append([target, f"{np.mean(scratch_t):.2f}"] + shown + cell(fast_arm))
    summary = (f"median over targets of the validation-selected transfer arm's ratio: {np.median(best_ratios):.2f} "
               f"({len(best_ratios)} targets where a transfer arm was picked; inf = never reached)")
    return markdown(header, lines) + "\n\n" + summary


def relatedness_table(rows, metric="test_hit@10"):
    """Per arm: Pearson r (and p) between KL(S||T) and the mean % gain over scratch, across targets."""
    from scipy.stats import pearsonr

    means = defaultdict(list)
    kl = {}
    for r in rows:
        means[(r["target"], r["arm"])].append(r[metric])
        if r["relatedness"] is not None:
            kl[r["target"]] = r["relatedness"]
    targets = [t for t in dict.fromkeys(r["target"] for r in rows) if t in kl]
    arms = [a for a in dict.fromkeys(r["arm"] for r in rows) if a != NO_TRANSFER]
    lines = []
    for arm in arms:
        gains = [100 * (np.mean(means[(t, arm)]) / np.mean(means[(t, NO_TRANSFER)]) - 1) for t in targets]
        if len(targets) < 3:
            continue
        r, p = pearsonr([kl[t] for t in targets], gains)
        lines.append([arm, f"{r:+.2f}", f"{p:.3f}", len(targets)])
    return markdown(["arm", "Pearson r (gain %, KL)", "p-value", "targets"], lines)


def report(saved):
    """The results file's Markdown, from the saved rows and run record alone."""
    rows, run = saved["rows"], saved["run"]
    seeds = sorted(set(r["seed"] for r in rows))
    wall_s = run.get("wall_s", saved.get("wall_s"))  # an older file keeps it beside the rows
    header = (
        f"# Layer-transfer benchmark (ml-100k default scenario)\n\n"
        f"command: `OMP_NUM_THREADS={run['threads']} python benchmarks/layer_transfer.py --seeds {' '.join(map(str, seeds))}`  \n"
        f"machine: {common.machine(run)}, {run['threads']} torch thread(s); training wall time {common.number(wall_s)}s; "
        f"each seed is its replicate's data seed (every arm of a seed: the same split and candidates)\n"
    )
    sections = [
        header,
        "## Gain over scratch, HR@10\n\n" + gain_table(rows),
        "## Gain over scratch, NDCG@10\n\n" + gain_table(rows, metric="test_ndcg@10"),
        "## Best transfer arm vs best baseline arm (popularity, ItemKNN, EASE, scratch), HR@10\n\n" + best_baseline_table(rows),
        "## Paired differences to scratch, HR@10\n\n" + paired_table(rows),
        "## Paired differences to scratch, NDCG@10\n\n" + paired_table(rows, "test_ndcg@10"),
        "## Mean ± std over seeds (test)\n\n" + metric_table(rows),
        "## Relatedness vs gain (HR@10): the paper expects lower KL, larger gain (negative r)\n\n"
        + relatedness_table(rows),
        "## Time to reach scratch's best validation HR@10 (fit wall time, seconds; transfer arms)\n\n"
        + time_to_reach_table([r for r in rows if r["arm"] == NO_TRANSFER or r.get("kind") == "transfer"]),
    ]
    return "\n\n".join(sections) + "\n"


def main(argv=None):
    args = common.parse(common.parser("layer_transfer", __doc__, seeds=[2020, 2021, 2022]), argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    common.measuring(args.threads)
    start = time.time()
    rows = run_scenario(
        None, None, None, [DEFAULT_SCENARIO], {"num_threads": args.threads}, seeds=args.seeds,
        progress=lambda m: print(m, flush=True),
    )
    rows = common.without(rows)
    saved = {"run": common.record(args.threads, wall_s=time.time() - start), "rows": rows}
    common.write(args.out, report(saved), saved)
    forest_plot(rows, args.out + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
