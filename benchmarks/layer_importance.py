"""Benchmark: layer importance by representation erasure (paper Fig. 2) on the default scenario's checkpoints.

Trains the default scenario's source (TransferMLP on drama) and its no-transfer model on the target action,
then, for each checkpoint, evaluates the unchanged model four times (identical values: the protocol fixes the
validation candidates) and runs ``--importance`` twice (identical tables), exactly as
``python run_recbole_transfer.py --importance=<checkpoint>`` does.

    OMP_NUM_THREADS=1 python benchmarks/layer_importance.py
"""

import argparse
import os
import platform
import sys
import tempfile
import time

import torch

from recbole_transfer.logs import quiet_logging
from recbole_transfer.methods.layer_transfer.importance import importance_table, layer_importance
from recbole_transfer.pipeline.two_stage import load_transfer_model, pretrain_source, run_transfer
from recbole_transfer.registry import get_method
from recbole_transfer.trainer import TransferTrainer

DEFAULT_SCENARIO = get_method("layer_transfer").scenario

HERE = os.path.dirname(os.path.abspath(__file__))


def measure(name, model_file):
    config, model, _, _, valid, _ = load_transfer_model(model_file)
    trainer = TransferTrainer(config, model, stage="analysis")
    repeats = [float(trainer.evaluate(valid, load_best_model=False)["hit@10"]) for _ in range(4)]
    start = time.time()
    first = layer_importance(config, model, valid)
    seconds = time.time() - start
    second = layer_importance(config, model, valid)
    lines = [f"## {name}", "",
             f"checkpoint: `{os.path.basename(model_file)}`; validation HR@10 of the unchanged model, 4 evaluations: "
             f"{' / '.join(f'{v:.4f}' for v in repeats)}; importance run twice: "
             f"{'identical' if first == second else 'DIFFERENT'} ({seconds:.1f}s per run)", "",
             importance_table(*first)]
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--out", default=os.path.join(HERE, "results", "layer_importance.md"))
    args = p.parse_args()
    quiet_logging()
    torch.set_num_threads(1)
    work = tempfile.mkdtemp(prefix="importance-")
    keys = {"seed": args.seed, "checkpoint_dir": os.path.join(work, "saved"), "protocol_dir": os.path.join(work, "protocols"),
            "domain_cache_dir": os.path.join(work, "domains")}
    source = pretrain_source("TransferMLP", "drama", [DEFAULT_SCENARIO], keys, verbose=False)
    target = run_transfer("TransferMLP", None, "action", [DEFAULT_SCENARIO], {**keys, "transfer": "none"},
                          verbose=False)
    text = "\n\n".join([
        "# Layer importance by representation erasure (default scenario)",
        f"command: `OMP_NUM_THREADS=1 python benchmarks/layer_importance.py --seed {args.seed}`  \n"
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 torch thread",
        measure("Source: TransferMLP on drama", source.model_file),
        measure("Target: TransferMLP trained from scratch on action", target["model_file"]),
    ]) + "\n"
    print(text)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
