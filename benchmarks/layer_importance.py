"""Benchmark: layer importance by representation erasure (paper Fig. 2) on the default scenario's checkpoints.

Trains the default scenario's source (TransferMLP on drama) and its no-transfer model on the target action,
then, for each checkpoint, evaluates the unchanged model four times (identical values: the protocol fixes the
validation candidates) and runs ``--importance`` twice (identical tables), exactly as
``python run_recbole_transfer.py --importance=<checkpoint>`` does.

    OMP_NUM_THREADS=1 python benchmarks/layer_importance.py
    python benchmarks/layer_importance.py --tables_from benchmarks/results/layer_importance.json

Writes results/layer_importance.md and .json (both checkpoints' measurements).
"""

import os
import sys
import tempfile
import time


from recbole_transfer.methods.layer_transfer.importance import importance_table, layer_importance
from recbole_transfer.pipeline.two_stage import load_transfer_model, pretrain_source, run_transfer
from recbole_transfer.registry import get_method
from recbole_transfer.trainer import TransferTrainer

import _common as common

DEFAULT_SCENARIO = get_method("layer_transfer").scenario


def measure(name, model_file):
    """The unchanged model's validation HR@10 four times, and the importance tables of two runs."""
    config, model, _, _, valid, _ = load_transfer_model(model_file)
    trainer = TransferTrainer(config, model, stage="analysis")
    repeats = [float(trainer.evaluate(valid, load_best_model=False)["hit@10"]) for _ in range(4)]
    start = time.time()
    first = layer_importance(config, model, valid)
    seconds = time.time() - start
    second = layer_importance(config, model, valid)
    base, rows = first
    return {"name": name, "checkpoint": os.path.basename(model_file), "repeats": repeats, "identical": first == second,
            "seconds": seconds, "base": base, "rows": rows}


def section(entry):
    return "\n".join([
        f"## {entry['name']}", "",
        f"checkpoint: `{entry['checkpoint']}`; validation HR@10 of the unchanged model, 4 evaluations: "
        f"{' / '.join(f'{v:.4f}' for v in entry['repeats'])}; importance run twice: "
        f"{'identical' if entry['identical'] else 'DIFFERENT'} ({entry['seconds']:.1f}s per run)", "",
        importance_table(entry["base"], entry["rows"])])


def report(saved):
    """The results file's Markdown, from the saved measurements and run record alone."""
    run = saved["run"]
    return "\n\n".join([
        "# Layer importance by representation erasure (default scenario)",
        f"command: `OMP_NUM_THREADS=1 python benchmarks/layer_importance.py --seed {run['seed']}`  \n"
        f"machine: {common.machine(run)}, {run['threads']} torch thread",
    ] + [section(entry) for entry in saved["rows"]]) + "\n"


def main(argv=None):
    p = common.parser("layer_importance", __doc__)
    p.add_argument("--seed", type=int, default=2020)
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    common.measuring(args.threads)
    work = tempfile.mkdtemp(prefix="importance-")
    keys = {"seed": args.seed, "checkpoint_dir": os.path.join(work, "saved"), "protocol_dir": os.path.join(work, "protocols"),
            "domain_cache_dir": os.path.join(work, "domains")}
    source = pretrain_source("TransferMLP", "drama", [DEFAULT_SCENARIO], keys, verbose=False)
    target = run_transfer("TransferMLP", None, "action", [DEFAULT_SCENARIO], {**keys, "transfer": "none"},
                          verbose=False)
    rows = [measure("Source: TransferMLP on drama", source.model_file),
            measure("Target: TransferMLP trained from scratch on action", target["model_file"])]
    saved = {"run": common.record(args.threads, seed=args.seed), "rows": rows}
    common.write(args.out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
