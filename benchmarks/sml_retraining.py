"""Benchmark: periodic retraining evaluated online (SML paper, Table 1 shape), on ml-100k and planted drift.

Methods: Popularity, Full-retrain, Fine-tune, Sample-based (reservoir), SML, all with the MF base (d 64,
lr 0.01, batch 1024; SML's transfer lr 1e-3, batch 256, weight decay 1e-4; one sampled negative).
The model after period t-1 is tested on period t: recall@K and NDCG@K over the items seen before t,
averaged over users, then over the test periods; "warm" keeps users seen before the tested period.

- ``ml-100k``: the bundled dataset in 10 equal-count periods; periods 1-4 validate, 5-9 test.
- ``drift``: planted data (``write_drifting_periods``: 200 users who return every period, 300 items,
  20 picks per user per period, 8 periods, taste = long-term factor + a drift that moves steadily
  (trend 0.3) plus noise (0.3)); periods 1-3 validate, 4-7 test; 20 epochs per period.

Per seed, the planted data is drawn under that seed as well. Ablation rows: "SML, random Θ", SML with the
paper's random initialisation of the transfer (``sml_theta_init: random``) instead of the identity fit;
"SML, no Step 2", SML with Θ never trained on the next period (``sml_rounds: 0``: f_Θ stays the identity fit,
so what remains is Step 1 through it). One torch thread.

    OMP_NUM_THREADS=1 python benchmarks/sml_retraining.py                     # both settings, 3 seeds
    OMP_NUM_THREADS=1 python benchmarks/sml_retraining.py --settings drift --seeds 2020 --out /tmp/q
    python benchmarks/sml_retraining.py --tables_from benchmarks/results/sml_retraining.json

Writes <out>.md (tables), <out>.json (every row) and <out>-<setting>.png (per-period curves).
"""

import argparse
import json
import os
import platform
import sys
import tempfile
import time

import torch

from recbole_transfer.config import TransferConfig
from recbole_transfer.data.synthetic import write_drifting_periods
from recbole_transfer.logs import quiet_logging
from recbole_transfer.methods.sml.runner import period_table_of, plot_curves, run_periodic, table1

HERE = os.path.dirname(os.path.abspath(__file__))
DRIFT = dict(n_users=200, n_items=300, periods=8, per_period=20, trend=0.3, drift=0.3, persistence=1.0)
SETTINGS = {
    "ml-100k": {"periods": 10, "test_periods": 5},
    "drift": {"periods": DRIFT["periods"], "test_periods": 4, "epochs": 20},
}


def run_setting(name, seed, folder):
    keys = {**SETTINGS[name], "seed": seed, "show_progress": False}
    if name == "drift":
        write_drifting_periods(folder, "drift", seed=seed, **DRIFT)
        keys["data_path"] = folder
    start = time.time()
    show = lambda line: print(f"  [{name} seed {seed}] {line}", flush=True)  # noqa: E731
    rows = run_periodic(TransferConfig("SML", name, None, keys), progress=show)
    for label, extra in (("SML, random Θ", {"sml_theta_init": "random"}), ("SML, no Step 2", {"sml_rounds": 0})):
        ablation = run_periodic(TransferConfig("SML", name, None, {**keys, **extra}), ["sml"], progress=show)
        for r in ablation:
            r["method"] = label
        rows += ablation
    for r in rows:
        r["setting"] = name
    print(f"  [{name} seed {seed}] {time.time() - start:.0f}s", flush=True)
    return rows


def section(name, setting_rows, seeds, seconds, out):
    """The tables of one setting (``seconds`` None: a rebuild from saved rows, no wall time)."""
    took = f"; {seconds:.0f}s" if seconds is not None else ""
    return (
        f"## {name} ({SETTINGS[name]['periods']} periods, last {SETTINGS[name]['test_periods']} tested; "
        f"seeds {seeds}{took})\n\nTest periods, mean ± std over seeds:\n\n{table1(setting_rows)}\n\n"
        f"Validation periods:\n\n{table1(setting_rows, phase='valid')}\n\n{period_table_of(setting_rows)}\n\n"
        f"Curves: `{os.path.basename(out)}-{name}.png`"
    )


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--settings", default="ml-100k drift")
    p.add_argument("--seeds", default="2020 2021 2022")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", default=os.path.join(HERE, "results", "sml_retraining"))
    p.add_argument("--tables_from", default=None, help="print the tables of a saved <out>.json (no training, nothing written)")
    args = p.parse_args()
    quiet_logging()
    if args.tables_from:  # a rebuild prints; only the measuring command writes the results files
        with open(args.tables_from, encoding="utf-8") as f:
            rows = json.load(f)
        out = os.path.splitext(args.tables_from)[0]
        print("\n\n".join(section(name, [r for r in rows if r["setting"] == name],
                                    sorted({r["seed"] for r in rows if r["setting"] == name}), None, out)
                            for name in dict.fromkeys(r["setting"] for r in rows)))
        return
    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split()]
    args.out = os.path.abspath(args.out)  # before the chdir below
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    rows, sections = [], []
    work = tempfile.mkdtemp(prefix="sml_bench_")
    os.chdir(work)  # RecBole's log/ and saved/ stay out of the repository
    for name in args.settings.split():
        start = time.time()
        setting_rows = []
        for seed in seeds:
            setting_rows += run_setting(name, seed, os.path.join(work, f"drift{seed}"))
        rows += setting_rows
        plot_curves(setting_rows, f"{args.out}-{name}.png")
        sections.append(section(name, setting_rows, seeds, time.time() - start, args.out))
    header = (f"# Periodic retraining, online evaluation\n\n`OMP_NUM_THREADS=1 python benchmarks/sml_retraining.py "
              f"--settings \"{args.settings}\" --seeds \"{args.seeds}\"` on {platform.processor() or platform.machine()}, "
              f"{args.threads} torch thread(s), Python {sys.version.split()[0]}, torch {torch.__version__}.\n\n")
    text = header + "\n\n".join(sections) + "\n"
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    print("\n" + text)


if __name__ == "__main__":
    main()
