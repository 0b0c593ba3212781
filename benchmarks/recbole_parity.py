"""Benchmark: ``transfer none`` against plain RecBole on the bundled ml-100k, full-sort evaluation.

For each run (model and epochs), RecBole's own ``run_recbole`` and recbole_transfer's ``run_transfer(..., transfer:
none)`` train the same model with the same seed (the data seed is the seed, as RecBole's own split takes it) and are
evaluated by full ranking: the validation and test metrics must be equal bit for bit. BPR uses a random-order RS
0.8/0.1/0.1 split by user (the random order is where a split drawn elsewhere would differ); GRU4Rec leave-one-out in
time order, as RecBole requires of a sequential model.

    OMP_NUM_THREADS=1 python benchmarks/recbole_parity.py                        # BPR 5 epochs, GRU4Rec 1 epoch
    OMP_NUM_THREADS=1 python benchmarks/recbole_parity.py --runs BPR:2 --out /tmp/parity
    python benchmarks/recbole_parity.py --tables_from benchmarks/results/recbole_parity.json

Writes results/recbole_parity.md and .json (both sides' metrics per run, and the seconds each took).
"""

import contextlib
import os
import sys
import tempfile
import time

import _common as common

EVAL = {
    "BPR": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
    "GRU4Rec": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "TO", "mode": "full"},
}


def keys(model, epochs, seed):
    out = {"epochs": epochs, "seed": seed, "eval_args": EVAL[model], "metrics": ["Hit", "NDCG"], "topk": [10],
           "valid_metric": "NDCG@10", "show_progress": False, "train_batch_size": 2048}
    if model == "GRU4Rec":
        out["train_neg_sample_args"] = None  # its CE loss scores every item (RecBole refuses sampled negatives)
    return out


def measure(model, epochs, seed):
    from recbole.quick_start import run_recbole

    from recbole_transfer.pipeline import run_transfer

    config = keys(model, epochs, seed)
    argv, sys.argv = sys.argv, [sys.argv[0]]  # RecBole's Config reads the command line
    try:
        start = time.time()
        plain = run_recbole(model=model, dataset="ml-100k", config_dict=dict(config), saved=False)
        plain_s = time.time() - start
    finally:
        sys.argv = argv
    start = time.time()
    ours = run_transfer(model, None, "ml-100k", None, {**config, "transfer": "none", "protocol_cache": False},
                        saved=False, verbose=False)
    ours_s = time.time() - start
    side = lambda result: {"valid": {k: float(v) for k, v in result["best_valid_result"].items()},  # noqa: E731
                           "test": {k: float(v) for k, v in result["test_result"].items()}}
    return {"model": model, "epochs": epochs, "seed": seed, "split": EVAL[model], "recbole": side(plain),
            "transfer_none": side(ours), "recbole_s": plain_s, "transfer_none_s": ours_s}


def report(saved):
    run = saved["run"]
    lines = []
    for row in saved["rows"]:
        for phase in ("valid", "test"):
            plain, ours = row["recbole"][phase], row["transfer_none"][phase]
            lines.append([row["model"], f"{row['split']['order']} {next(iter(row['split']['split']))}", row["epochs"],
                          row["seed"], phase] + [f"{plain[m]:.4f} / {ours[m]:.4f}" for m in ("hit@10", "ndcg@10")]
                         + ["yes" if plain == ours else "NO"])
    from recbole_transfer.report import markdown

    runs = " ".join(f"{r['model']}:{r['epochs']}" for r in saved["rows"])
    return "\n".join([
        "# transfer none against plain RecBole (ml-100k, full ranking)",
        "",
        f"command: `OMP_NUM_THREADS=1 python benchmarks/recbole_parity.py --runs {runs}`  ",
        f"machine: {common.machine(run)}, {run['threads']} torch thread; cells: run_recbole / run_transfer with "
        "transfer none (data seed = seed); 'equal': every validation and test metric equal bit for bit",
        "",
        markdown(["model", "split", "epochs", "seed", "phase", "HR@10", "NDCG@10", "equal"], lines),
    ]) + "\n"


def main(argv=None):
    p = common.parser("recbole_parity", __doc__)
    p.add_argument("--runs", nargs="+", default=["BPR:5", "GRU4Rec:1"], help="model:epochs (default BPR:5 GRU4Rec:1)")
    p.add_argument("--seed", type=int, default=7)
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    common.measuring(args.threads)
    out = os.path.abspath(args.out)
    start = time.time()
    with tempfile.TemporaryDirectory() as work, contextlib.chdir(work):  # RecBole writes log/ and saved/ here
        rows = [measure(model, int(epochs), args.seed) for model, epochs in (r.split(":") for r in args.runs)]
    saved = {"run": common.record(args.threads, wall_s=time.time() - start), "rows": rows}
    common.write(out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
