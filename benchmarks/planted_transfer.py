"""Benchmark: does layer transfer beat scratch on planted synthetic domains?

Source and target are written by ``recbole_transfer.data.synthetic.write_planted_domain``: users and items
of each domain fall into latent clusters and users mostly pick items of their own cluster. Ids are
disjoint, so only the interaction function (the MLP) can carry anything from source to target. A noise
source (``signal=0``: users pick items uniformly) is the control: a transfer from it carries no planted
knowledge, so any gain it shows is an optimisation effect, not knowledge transfer.

Arms: scratch, config-1 and config-6 (frozen), config-1 fine-tuned, config-1 (frozen) from the noise
source. Everything runs through the product's own pipeline (``pretrain_source`` + ``run_transfer``).

    OMP_NUM_THREADS=1 python benchmarks/planted_transfer.py       # ~3 min on one core
"""

import argparse
import logging
import os
import platform
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

from recbole_transfer.data.synthetic import write_planted_domain
from recbole_transfer.quick_start import pretrain_source, run_transfer

HERE = os.path.dirname(os.path.abspath(__file__))
ARMS = [
    ("scratch", "none", "freeze", None),
    ("config-1 frozen", "config-1", "freeze", "planted"),
    ("config-6 frozen", "config-6", "freeze", "planted"),
    ("config-1 fine-tuned", "config-1", "finetune", "planted"),
    ("config-1 frozen, noise source", "config-1", "freeze", "noise"),
]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--target_per_user", type=int, default=5, help="interactions per target user")
    parser.add_argument("--clusters", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "planted_transfer.md"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.INFO)
    torch.set_num_threads(args.threads)
    start = time.time()
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        data = os.path.join(work, "data")
        write_planted_domain(data, "src", 400, 200, 20, n_clusters=args.clusters, signal=0.9, seed=1)
        write_planted_domain(data, "noise", 400, 200, 20, n_clusters=args.clusters, signal=0.0, seed=2)
        write_planted_domain(data, "tgt", 400, 200, args.target_per_user, n_clusters=args.clusters, signal=0.9, seed=3)
        results = {name: [] for name, *_ in ARMS}
        for seed in args.seeds:
            base = {
                "data_path": data, "seed": seed, "show_progress": False, "train_batch_size": 256,
                "user_inter_num_interval": "[3,inf)", "num_threads": args.threads,
            }
            sources = {
                kind: pretrain_source("TransferMLP", kind if kind == "noise" else "src", None, base, verbose=False)
                for kind in ("planted", "noise")
            }
            print(f"seed {seed}: source test HR@10 planted {sources['planted'].test_result['hit@10']:.3f}, "
                  f"noise {sources['noise'].test_result['hit@10']:.3f}", flush=True)
            for name, transfer, mode, source in ARMS:
                out = run_transfer(
                    "TransferMLP", None, "tgt", None, {**base, "transfer": transfer, "transfer_mode": mode},
                    pretrained=sources[source] if source else None, verbose=False, log=False,
                )
                hit = out["test_result"]["hit@10"]
                results[name].append((hit, out["epochs_run"]))
                print(f"  {name:32s} HR@10 {hit:.4f}  epochs {out['epochs_run']}", flush=True)
    scratch = np.mean([h for h, _ in results["scratch"]])
    lines = [
        "# Planted-signal layer transfer (synthetic, ids disjoint)\n",
        f"command: `OMP_NUM_THREADS={args.threads} python benchmarks/planted_transfer.py --seeds "
        f"{' '.join(map(str, args.seeds))} --target_per_user {args.target_per_user} --clusters {args.clusters}`  ",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}; "
        f"total wall time {time.time() - start:.0f}s\n",
        "| arm | test HR@10 mean ± std | per seed | gain over scratch | epochs run (mean) |",
        "|---|---|---|---|---|",
    ]
    for name, *_ in ARMS:
        hits = np.array([h for h, _ in results[name]])
        gain = f"{100 * (hits.mean() - scratch) / scratch:+.1f}%" if name != "scratch" else ""
        lines.append(
            f"| {name} | {hits.mean():.4f} ± {hits.std():.4f} | {' '.join(f'{h:.3f}' for h in hits)} | {gain} | "
            f"{np.mean([e for _, e in results[name]]):.1f} |"
        )
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
