"""Benchmark: per-epoch wall time of TransferTrainer vs RecBole's Trainer, same model and data.

Both fit the same TransferMLP on the default scenario's source domain (ml-100k Drama, ~13k
interactions) for a fixed number of epochs with validation and checkpoint saving every epoch; runs are
interleaved (A B B A ...) to cancel drift. Goal: ratio <= 1.05.

    OMP_NUM_THREADS=1 python benchmarks/trainer_overhead.py [--epochs 5 --repeats 6]
"""

import argparse
import os
import platform
import statistics
import sys
import time

import torch
from recbole.trainer import Trainer

from recbole_transfer.logs import quiet_logging
from recbole_transfer.pipeline.two_stage import build_model, domain_config, prepare_domain
from recbole_transfer.registry import get_method
from recbole_transfer.report import markdown
from recbole_transfer.trainer import TransferTrainer

DEFAULT_SCENARIO = get_method("layer_transfer").scenario

HERE = os.path.dirname(os.path.abspath(__file__))


def per_epoch(trainer_cls, data, epochs):
    model = build_model(data)
    trainer = trainer_cls(data.config, model)
    start = time.perf_counter()
    trainer.fit(data.train_data, data.valid_data, saved=True, verbose=False)
    return (time.perf_counter() - start) / epochs


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--domain", default="drama")
    parser.add_argument("--out", default=os.path.join(HERE, "results", "trainer_overhead.md"))
    args = parser.parse_args()
    quiet_logging()
    torch.set_num_threads(1)
    config = domain_config(
        "TransferMLP", args.domain, [DEFAULT_SCENARIO],
        {"epochs": args.epochs, "stopping_step": args.epochs + 1, "checkpoint_dir": "/tmp/rt_bench_saved"},
    )
    data = prepare_domain(config)
    times = {"RecBole Trainer": [], "TransferTrainer": []}
    order = [("RecBole Trainer", Trainer), ("TransferTrainer", TransferTrainer)]
    per_epoch(TransferTrainer, data, args.epochs)  # warm-up
    for rep in range(args.repeats):
        for name, cls in (order if rep % 2 == 0 else order[::-1]):
            times[name].append(per_epoch(cls, data, args.epochs))
    rec, ours = statistics.median(times["RecBole Trainer"]), statistics.median(times["TransferTrainer"])
    lines = [
        "# Trainer overhead",
        "",
        f"command: `OMP_NUM_THREADS=1 python benchmarks/trainer_overhead.py --epochs {args.epochs} --repeats {args.repeats}`  ",
        f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, 1 torch thread; "
        f"domain {args.domain!r}: {data.dataset.inter_num} interactions, batch {config['train_batch_size']}, "
        f"{config['train_neg_sample_args']['sample_num']} negatives, uni99 validation + checkpoint every epoch",
        "",
        markdown(["trainer", "median s/epoch", "all runs (s/epoch)"], [
            [name, f"{median:.3f}", ", ".join(f"{t:.3f}" for t in times[name])]
            for name, median in (("RecBole Trainer", rec), ("TransferTrainer", ours))
        ]),
        "",
        f"ratio TransferTrainer / RecBole Trainer = {ours / rec:.3f} (goal <= 1.05)",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    with open(args.out, "w", encoding="utf-8") as f:
        f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
