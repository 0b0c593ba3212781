"""Benchmark: does layer transfer beat scratch on planted synthetic domains?

Domains are written by ``recbole_transfer.data.synthetic.write_planted_scenario``: users and items
of each domain fall into latent clusters and users mostly pick items of their own cluster. Ids are
disjoint, so only the interaction function (the MLP) can carry anything from source to target. A noise
source (``signal=0``: users pick items uniformly) is the control: a transfer from it carries no planted
knowledge, so any gain it shows is an optimisation effect, not knowledge transfer.

Every arm of a seed trains and is scored on the same split and candidates (the seed is the data seed); the
paired difference to scratch averages each user's difference over the seeds (bootstrap 95 % interval over
users, * = excludes 0).

Setting "disjoint" (the paper's): arms scratch, config-1 and config-6 (frozen), config-1 fine-tuned,
config-1 (frozen) from the noise source. Setting "shared users" (the planted test in tests/test_planted.py):
source and target share their users, the user embedding moves with fc1..fc4 (frozen), from the planted
or from the noise source. Everything runs through the product's own pipeline (``pretrain_source`` +
``run_transfer``).

    OMP_NUM_THREADS=1 python benchmarks/planted_transfer.py       # ~1 min on one core
    python benchmarks/planted_transfer.py --tables_from benchmarks/results/planted_transfer.json

Writes results/planted_transfer.md and .json (every arm and seed's row, with per-user test values).
"""

import os
import sys
import tempfile
import time

import numpy as np

from recbole_transfer.data.synthetic import write_planted_scenario
from recbole_transfer.pipeline.two_stage import pretrain_source, run_transfer
from recbole_transfer.report import markdown, mean_std
from recbole_transfer.stats import paired_strata, paired_users

import _common as common

SHARED = "[user_embedding,fc1,fc2,fc3,fc4]"
SETTINGS = {
    "disjoint": [
        ("scratch", "none", "freeze", None),
        ("config-1 frozen", "config-1", "freeze", "planted"),
        ("config-6 frozen", "config-6", "freeze", "planted"),
        ("config-1 fine-tuned", "config-1", "finetune", "planted"),
        ("config-1 frozen, noise source", "config-1", "freeze", "noise"),
    ],
    "shared users": [
        ("scratch", "none", "freeze", None),
        ("user_embedding+fc1..4 frozen", SHARED, "freeze", "planted"),
        ("user_embedding+fc1..4 frozen, noise source", SHARED, "freeze", "noise"),
    ],
}


def measure(setting, arms, args):
    """Rows of one setting: every arm at every seed (the test HR@10, epochs run and per-user values)."""
    rows = []
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        data = os.path.join(work, "data")
        shared = setting == "shared users"
        write_planted_scenario(data, shared, args.clusters, args.target_per_user)
        extra = {"train_batch_size": 256, **({"epochs": 30, "source_epochs": 20} if shared else {})}
        for seed in args.seeds:
            base = {
                "data_path": data, "seed": seed, "show_progress": False, "user_inter_num_interval": "[3,inf)",
                "num_threads": args.threads, **extra,
            }
            sources = {
                kind: pretrain_source("TransferMLP", "src" if kind == "planted" else "noise", None, base, verbose=False)
                for kind in ("planted", "noise")
            }
            print(f"[{setting}] seed {seed}: source test HR@10 planted {sources['planted'].test_result['hit@10']:.3f}, "
                  f"noise {sources['noise'].test_result['hit@10']:.3f}", flush=True)
            for name, transfer, mode, source in arms:
                out = run_transfer(
                    "TransferMLP", None, "tgt", None, {**base, "transfer": transfer, "transfer_mode": mode},
                    pretrained=sources[source] if source else None, verbose=False,
                )
                hit = float(out["test_result"]["hit@10"])
                rows.append({"setting": setting, "target": "tgt", "arm": name, "seed": seed, "hit": hit,
                             "epochs": out["epochs_run"], "fingerprint": out["fingerprint"],
                             "test_per_user": out["test_per_user"], "test_users": out["test_users"]})
                print(f"  {name:44s} HR@10 {hit:.4f}  epochs {out['epochs_run']}", flush=True)
    return rows


def setting_table(rows):
    """Per arm: test HR@10 mean ± std and per seed, the gain over scratch and the paired difference to it."""
    scratch = {r["seed"]: r for r in rows if r["arm"] == "scratch"}
    mean_scratch = np.mean([r["hit"] for r in scratch.values()])
    table = []
    for name in dict.fromkeys(r["arm"] for r in rows):
        runs = [r for r in rows if r["arm"] == name]
        hits = np.array([r["hit"] for r in runs])
        gain = f"{100 * (hits.mean() - mean_scratch) / mean_scratch:+.1f}%" if name != "scratch" else ""
        pairs = [paired_users(r, scratch[r["seed"]], "test_hit@10") for r in runs]
        paired = paired_strata([pairs]).cell() if name != "scratch" else ""
        table.append([name, mean_std(hits), " ".join(f"{h:.3f}" for h in hits), gain, paired,
                      f"{np.mean([r['epochs'] for r in runs]):.1f}"])
    return markdown(["arm", "test HR@10 mean ± std", "per seed", "gain over scratch",
                     "paired difference to scratch [95% CI]", "epochs run (mean)"], table)


def report(saved):
    """The results file's Markdown, from the saved rows and run record alone."""
    rows, run = saved["rows"], saved["run"]
    lines = [
        "# Planted-signal transfer (synthetic)\n",
        f"command: `OMP_NUM_THREADS={run['threads']} python benchmarks/planted_transfer.py --seeds "
        f"{' '.join(map(str, run['seeds']))} --target_per_user {run['target_per_user']} --clusters {run['clusters']}`  ",
        f"machine: {common.machine(run)}; total wall time {common.number(run['wall_s'])}s",
    ]
    for setting in dict.fromkeys(r["setting"] for r in rows):
        lines += [f"\n## {setting}\n", setting_table([r for r in rows if r["setting"] == setting])]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = common.parser("planted_transfer", __doc__, seeds=[1, 2, 3])
    p.add_argument("--target_per_user", type=int, default=5, help="interactions per target user (disjoint)")
    p.add_argument("--clusters", type=int, default=8, help="latent clusters (disjoint setting)")
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    common.measuring(args.threads)
    args.out = os.path.abspath(args.out)  # before the chdir of each setting
    start = time.time()
    rows = [row for setting, arms in SETTINGS.items() for row in measure(setting, arms, args)]
    run = common.record(args.threads, seeds=args.seeds, target_per_user=args.target_per_user, clusters=args.clusters,
                        wall_s=time.time() - start)
    saved = {"run": run, "rows": rows}
    common.write(args.out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
