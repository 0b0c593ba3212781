"""Benchmark: one dense source, six sparse targets (MMT-Net, seed 000) on the bundled ml-100k regions.

Scenario: recbole_transfer/methods/mmtnet/scenario.yaml (users split by zip region; source = regions 9, 5, 2, 1;
targets = regions 0, 3, 4, 6, 7, 8, each user's TRAINING interactions thinned to ``--fractions`` (``keep_fraction``;
valid, test and candidates are the same at every fraction). Per seed, MMTNet
is trained on the source once; every (fraction, target) then runs the arms (a) scratch, (b) annealed
fine-tuning, (c) DRR, (d) the frozen-random control, all from that one source model, beside the baselines
(RecBole's Pop, ItemKNN and EASE on the target's training rows) and ``frozen`` (the copied modules frozen, no adapters: DRR's ablation). Row (e) is the
layer-transfer MLP of seed 001 with its best configuration of our layer-transfer benchmark (config-3,
frozen; benchmarks/results/layer_transfer.md), beside its own scratch, on the same targets (its source
stage trains TransferMLP on the same source). Test HR@10 / NDCG@10 (leave-one-out, 1 + 99 sampled
negatives; each seed is its replicate's data seed, so every arm, model and fraction of a seed is scored on the
same users and candidates), paired differences with 95 % intervals, wall time of each target's training.

    OMP_NUM_THREADS=1 python benchmarks/mmtnet_transfer.py                     # 3 seeds, 10/20/50 %
    OMP_NUM_THREADS=1 python benchmarks/mmtnet_transfer.py --seeds 2020 --fractions 0.2 --out /tmp/q
    python benchmarks/mmtnet_transfer.py --tables_from benchmarks/results/mmtnet_transfer.json

Finished (seed, fraction) blocks are kept in <out>.part/*.json and reused by a rerun (delete them to
measure again).
"""

import os
import sys
import time

import numpy as np
import yaml

from recbole_transfer.methods.mmtnet.strategy import SHARED_ARMS
from recbole_transfer.pipeline.scenario import run_scenario
from recbole_transfer.pipeline.two_stage import pretrain_source
from recbole_transfer.registry import get_method
from recbole_transfer.report import (best_baseline_table, first_time_reaching, forest_plot, markdown, one_to_many_table,
                                     paired_vs)

import _common as common

REGIONS_SCENARIO = get_method("mmtnet").scenario

# (a) scratch, (b) anneal, (c) drr, (d) random, plus the baselines (RecBole's Pop, ItemKNN and EASE on the target's
# training rows, at their default keys) and frozen (DRR without adapters)
MMT_ARMS = ["pop", "ItemKNN", "EASE"] + SHARED_ARMS[:1] + ["frozen"] + SHARED_ARMS[1:]

MLP_ARMS = {"none": "MLP scratch", "config-3": "MLP config-3"}


def scenario_names():
    with open(REGIONS_SCENARIO, encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    return spec["source"], spec["targets"]


def run_block(seed, fraction, threads, source_files, log):
    """Every arm on every target at one fraction (of each user's training interactions), for one seed."""
    source, targets = scenario_names()
    keys = {"seed": seed, "num_threads": threads, "keep_fraction": fraction}
    rows = []
    for model, arms, relabel in (("MMTNet", MMT_ARMS, {}), ("TransferMLP", list(MLP_ARMS), MLP_ARMS)):
        block = run_scenario(model, source, targets, [REGIONS_SCENARIO],
                             {**keys, "source_checkpoint": source_files[model]}, arms, [seed], progress=log)
        for row in block:
            row["arm"] = relabel.get(row["arm"], row["arm"])
            row["fraction"] = fraction
        rows += block
    return rows


def report(saved):
    """The results file's Markdown, from the saved rows and run record alone."""
    rows, run = saved["rows"], saved["run"]
    seeds = sorted(set(r["seed"] for r in rows))
    fractions = list(dict.fromkeys(r["fraction"] for r in rows))
    source = run.get("source_seconds", {})
    sections = [f"## Targets at {round(fraction * 100)} % of each user's training interactions\n\n"
                + one_to_many_table([r for r in rows if r["fraction"] == fraction]) + "\n\nBest transfer arm vs best baseline "
                "arm (popularity, ItemKNN, EASE, the scratch models), HR@10:\n\n"
                + best_baseline_table([r for r in rows if r["fraction"] == fraction]) for fraction in fractions]
    sections.append(goals(rows, fractions))
    header = (
        "# MMT-Net one-to-many transfer benchmark (ml-100k regions)\n\n"
        f"command: `OMP_NUM_THREADS={run['threads']} python benchmarks/mmtnet_transfer.py --seeds {' '.join(map(str, seeds))} "
        f"--fractions {' '.join(f'{f:g}' for f in fractions)}`  \n"
        f"machine: {common.machine(run)}, {run['threads']} torch thread(s); "
        f"wall time of this run {common.number(run.get('wall_s'))}s (blocks reused from an earlier run take 0s)  \n"
        f"source stage, once per seed and shared by every target and arm: MMTNet {common.number(source.get('MMTNet'))}s, "
        f"TransferMLP {common.number(source.get('TransferMLP'))}s (mean over seeds; not in the per-target wall times)\n"
    )
    return header + "\n" + "\n\n".join(sections) + "\n"


def main(argv=None):
    p = common.parser("mmtnet_transfer", __doc__, seeds=[2020, 2021, 2022])
    p.add_argument("--fractions", type=float, nargs="+", default=[0.2, 0.1, 0.5])
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    common.measuring(args.threads)
    os.makedirs(args.out + ".part", exist_ok=True)
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    start, rows, source_seconds = time.time(), [], {"MMTNet": [], "TransferMLP": []}
    for seed in args.seeds:
        source_files = {}
        for model in source_seconds:
            def pretrain():
                t0 = time.time()
                pretrained = pretrain_source(model, scenario_names()[0], [REGIONS_SCENARIO],
                                             {"seed": seed, "num_threads": args.threads}, verbose=False)
                return {"file": pretrained.model_file, "seconds": time.time() - t0, "test": dict(pretrained.test_result)}

            saved = common.part(os.path.join(args.out + ".part", f"source-{model}-{seed}.json"), pretrain, log)
            source_files[model] = saved["file"]
            source_seconds[model].append(saved["seconds"])
            log(f"seed {seed}: {model} source in {saved['seconds']:.0f}s, test {saved['test']}")
        for fraction in args.fractions:
            rows += common.part(os.path.join(args.out + ".part", f"seed{seed}-k{round(fraction * 100):02d}.json"),
                                lambda: common.without(run_block(seed, fraction, args.threads, source_files, log)), log)
    run = common.record(args.threads, wall_s=time.time() - start,
                        source_seconds={m: float(np.mean(s)) for m, s in source_seconds.items()})
    saved = {"run": run, "rows": rows}
    common.write(args.out, report(saved), saved)
    forest_plot([r for r in rows if r["fraction"] == args.fractions[0]], args.out + ".png")
    return 0


def time_to_quality(chosen, arm):
    """(sum over targets of the seconds ``arm`` took to first reach scratch's best validation HR@10, where it
    never did: its whole fit) / (the same sum of scratch's seconds to its own best), mean over seeds; and
    how many (seed, target) runs of ``arm`` reached that level."""
    by_key = {(r["seed"], r["target"], r["arm"]): r for r in chosen}
    ratios, reached, runs = [], 0, 0
    for seed in sorted(set(r["seed"] for r in chosen)):
        spent = own = 0.0
        for (s, target, a), row in by_key.items():
            if s != seed or a != "none" or (seed, target, arm) not in by_key:
                continue
            level = max(score for _e, _s, score in row["valid_curve"])
            own += first_time_reaching(row["valid_curve"], level)
            other = by_key[(seed, target, arm)]
            t = first_time_reaching(other["valid_curve"], level)
            reached, runs = reached + (t is not None), runs + 1
            spent += t if t is not None else other["seconds"]
        ratios.append(spent / own)
    return float(np.mean(ratios)), reached, runs


def goals(rows, fractions):
    """The issue's goals per fraction: DRR >= scratch (macro HR@10 and NDCG@10), control below DRR, DRR's
    total wall time over scratch's; and DRR's time to reach scratch's best validation HR@10. Differences are
    paired (each user's difference averaged over the seeds, targets as strata: the macro difference) with a 95 %
    interval."""
    header = ["targets at", "DRR - scratch, macro HR@10", "DRR - scratch, macro NDCG@10", "DRR - random control, HR@10",
              "anneal - scratch, HR@10", "frozen - scratch, HR@10", "DRR - popularity, HR@10", "DRR wall / scratch wall",
              "DRR time to scratch's best valid HR@10 / scratch's (runs that reached it)"]
    lines = []
    for fraction in fractions:
        chosen = [r for r in rows if r["fraction"] == fraction]
        ratio, reached, runs = time_to_quality(chosen, "drr")

        def diff(arm, base, metric="test_hit@10"):
            found = paired_vs(chosen, arm, base, metric)
            return found.cell() if found else "-"

        def wall(arm):
            return sum(r["seconds"] for r in chosen if r["arm"] == arm)

        lines.append([
            f"{round(fraction * 100)} %", diff("drr", "none"), diff("drr", "none", "test_ndcg@10"), diff("drr", "random"),
            diff("anneal", "none"), diff("frozen", "none"), diff("drr", "pop"), f"{wall('drr') / wall('none'):.2f}",
            f"{ratio:.2f} ({reached}/{runs})",
        ])
    return "\n".join(["## Goals", "", "Paired differences of macro test metrics, mean [bootstrap 95 % interval], * = excludes 0.",
                      "", markdown(header, lines)])


if __name__ == "__main__":
    sys.exit(main())
