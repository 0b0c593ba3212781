"""Benchmark: per-epoch wall time of TransferTrainer vs RecBole's Trainer, same model and data.

Both fit the same TransferMLP on the default scenario's source domain (ml-100k Drama, ~13k
interactions) for a fixed number of epochs with validation and checkpoint saving every epoch; runs are
interleaved (A B B A ...) to cancel drift. Goal: ratio <= 1.05.

    OMP_NUM_THREADS=1 python benchmarks/trainer_overhead.py [--epochs 5 --repeats 6]
    python benchmarks/trainer_overhead.py --tables_from benchmarks/results/trainer_overhead.json

Writes results/trainer_overhead.md and .json (every run's seconds per epoch).
"""

import statistics
import sys
import time

from recbole.trainer import Trainer

from recbole_transfer.pipeline.two_stage import build_model, prepare_domain
from recbole_transfer.request import domain_config
from recbole_transfer.registry import get_method
from recbole_transfer.report import markdown
from recbole_transfer.trainer import TransferTrainer

import _common as common

DEFAULT_SCENARIO = get_method("layer_transfer").scenario


def per_epoch(trainer_cls, data, epochs):
    model = build_model(data)
    trainer = trainer_cls(data.config, model)
    start = time.perf_counter()
    trainer.fit(data.train_data, data.valid_data, saved=True, verbose=False)
    return (time.perf_counter() - start) / epochs


def report(saved):
    """The results file's Markdown, from the saved times and run record alone."""
    run, times = saved["run"], saved["rows"]
    rec, ours = statistics.median(times["RecBole Trainer"]), statistics.median(times["TransferTrainer"])
    lines = [
        "# Trainer overhead",
        "",
        f"command: `OMP_NUM_THREADS=1 python benchmarks/trainer_overhead.py --epochs {run['epochs']} --repeats {run['repeats']}`  ",
        f"machine: {common.machine(run)}, {run['threads']} torch thread; domain {run['domain']!r}: {run['interactions']} "
        f"interactions, batch {run['batch']}, {run['negatives']} negatives, uni99 validation + checkpoint every epoch",
        "",
        markdown(["trainer", "median s/epoch", "all runs (s/epoch)"], [
            [name, f"{median:.3f}", ", ".join(f"{t:.3f}" for t in times[name])]
            for name, median in (("RecBole Trainer", rec), ("TransferTrainer", ours))
        ]),
        "",
        f"ratio TransferTrainer / RecBole Trainer = {ours / rec:.3f} (goal <= 1.05)",
    ]
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = common.parser("trainer_overhead", __doc__)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=6)
    p.add_argument("--domain", default="drama")
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    common.measuring(args.threads)
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
    run = common.record(args.threads, epochs=args.epochs, repeats=args.repeats, domain=args.domain,
                        interactions=data.dataset.inter_num, batch=config["train_batch_size"],
                        negatives=config["train_neg_sample_args"]["sample_num"])
    saved = {"run": run, "rows": times}
    common.write(args.out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
