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

    OMP_NUM_THREADS=1 python benchmarks/planted_transfer.py       # ~3 min on one core
"""

import argparse
import os
import platform
import sys
import tempfile
import time

import numpy as np
import torch

from recbole_transfer.data.synthetic import write_planted_scenario
from recbole_transfer.logs import quiet_logging
from recbole_transfer.pipeline.two_stage import pretrain_source, run_transfer
from recbole_transfer.report import markdown, mean_std
from recbole_transfer.stats import paired_strata, paired_users

HERE = os.path.dirname(os.path.abspath(__file__))
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


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--target_per_user", type=int, default=5, help="interactions per target user (disjoint)")
    parser.add_argument("--clusters", type=int, default=8, help="latent clusters (disjoint setting)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "planted_transfer.md"))
    args = parser.parse_args()
    quiet_logging()
    torch.set_num_threads(args.threads)
    start = time.time()
    lines = [
        "# Planted-signal transfer (synthetic)\n",
        f"command: `OMP_NUM_THREADS={args.threads} python benchmarks/planted_transfer.py --seeds "
        f"{' '.join(map(str, args.seeds))} --target_per_user {args.target_per_user} --clusters {args.clusters}`  ",
    ]
    for setting, arms in SETTINGS.items():
        results = {name: [] for name, *_ in arms}
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
                    hit = out["test_result"]["hit@10"]
                    row = {"target": "tgt", "arm": name, "seed": seed, "fingerprint": out["fingerprint"],
                           "test_per_user": out["test_per_user"], "test_users": out["test_users"]}
                    results[name].append((hit, out["epochs_run"], row))
                    print(f"  {name:44s} HR@10 {hit:.4f}  epochs {out['epochs_run']}", flush=True)
        scratch = np.mean([h for h, *_ in results["scratch"]])
        table = []
        for name, *_ in arms:
            hits = np.array([h for h, *_ in results[name]])
            gain = f"{100 * (hits.mean() - scratch) / scratch:+.1f}%" if name != "scratch" else ""
            pairs = [paired_users(r, base, "test_hit@10") for (*_, r), (*_, base) in zip(results[name], results["scratch"])]
            paired = paired_strata([pairs]).cell() if name != "scratch" else ""
            table.append([name, mean_std(hits), " ".join(f"{h:.3f}" for h in hits), gain, paired,
                          f"{np.mean([e for _, e, _ in results[name]]):.1f}"])
        lines += [f"\n## {setting}\n", markdown(["arm", "test HR@10 mean ± std", "per seed", "gain over scratch",
                                                   "paired difference to scratch [95% CI]", "epochs run (mean)"], table)]
    lines.insert(2, f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
                    f"total wall time {time.time() - start:.0f}s")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
