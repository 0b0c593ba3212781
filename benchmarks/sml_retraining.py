"""Benchmark: periodic retraining evaluated online (SML paper, Table 1 shape), on ml-100k and planted drift.

Methods: Popularity, EASE, ItemKNN and SLIM (RecBole's, rebuilt on every period so far; EASE and ItemKNN at RecBole's
default keys, SLIM at the family's slim_alpha 0.1 and slim_l1_ratio 0.005),
Full-retrain, Fine-tune, Sample-based (reservoir), SML, the trained ones with the MF base (d 64,
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

import os
import sys
import tempfile
import time

from recbole_transfer.config import TransferConfig
from recbole_transfer.data.synthetic import write_drifting_periods
from recbole_transfer.methods.sml.retraining import RETRAIN_METHODS, run_periodic
from recbole_transfer.methods.sml.tables import best_vs_best, period_table_of, plot_curves, table1

import _common as common

PAIRED = "ndcg@20"  # the metric SML is paired on with the best baseline (best_vs_best's default: NDCG at the largest K)
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
    rows = run_periodic(TransferConfig("SML", name, None, keys), progress=show, per_user=True)  # per user: best vs best
    for r in rows:  # the paired tables read NDCG@20 per user only; the other metrics' lists would grow the file ~6x
        r["per_user"] = {PAIRED: r["per_user"][PAIRED]}
    for label, extra in (("SML, random Θ", {"sml_theta_init": "random"}), ("SML, no Step 2", {"sml_rounds": 0})):
        ablation = run_periodic(TransferConfig("SML", name, None, {**keys, **extra}), ["sml"], progress=show)
        for r in ablation:
            r["method"] = label
        rows += ablation
    for r in rows:
        r["setting"] = name
    print(f"  [{name} seed {seed}] {time.time() - start:.0f}s", flush=True)
    return rows


def section(name, setting_rows, seconds, out):
    """The tables of one setting (``seconds``: its wall time, None when the results file did not keep it)."""
    seeds = sorted({r["seed"] for r in setting_rows})
    best = best_vs_best([{**r, "target": name} for r in setting_rows if r["method"] in RETRAIN_METHODS])
    if best:  # per-user values kept (runs since the baselines joined): the best baseline against SML, paired
        best = ("SML against the best baseline method (popularity, EASE, ItemKNN, SLIM, full retraining, fine-tuning, "
                f"sample-based; the ablations left out), each picked per seed on the validation periods:\n\n{best}\n\n")
    return (
        f"## {name} ({SETTINGS[name]['periods']} periods, last {SETTINGS[name]['test_periods']} tested; "
        f"seeds {seeds}; {common.number(seconds)}s)\n\nTest periods, mean ± std over seeds:\n\n{table1(setting_rows)}\n\n"
        f"Validation periods:\n\n{table1(setting_rows, phase='valid')}\n\n{period_table_of(setting_rows)}\n\n"
        f"{best}"
        f"Curves: `{out}-{name}.png`"
    )


def report(saved):
    """The results file's Markdown, from the saved rows and run record alone."""
    rows, run = saved["rows"], saved["run"]
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    seeds = " ".join(map(str, sorted({r["seed"] for r in rows})))
    seconds = run.get("seconds", {})
    header = (f"# Periodic retraining, online evaluation\n\n`OMP_NUM_THREADS=1 python benchmarks/sml_retraining.py "
              f"--settings \"{' '.join(settings)}\" --seeds \"{seeds}\"` on {run['processor']}, "
              f"{run['threads']} torch thread(s), Python {run['python']}, torch {run['torch']}.\n\n")
    return header + "\n\n".join(section(name, [r for r in rows if r["setting"] == name], seconds.get(name),
                                          run.get("stem", "sml_retraining")) for name in settings) + "\n"


def main(argv=None):
    p = common.parser("sml_retraining", __doc__, seeds=[2020, 2021, 2022])
    p.add_argument("--settings", default="ml-100k drift")
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    common.measuring(args.threads)
    args.out = os.path.abspath(args.out)  # before the chdir below
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    rows, seconds = [], {}
    work = tempfile.mkdtemp(prefix="sml_bench_")
    os.chdir(work)  # RecBole's log/ and saved/ stay out of the repository
    for name in args.settings.split():
        start = time.time()
        setting_rows = []
        for seed in args.seeds:
            setting_rows += run_setting(name, seed, os.path.join(work, f"drift{seed}"))
        rows += setting_rows
        plot_curves(setting_rows, f"{args.out}-{name}.png")
        seconds[name] = time.time() - start
    saved = {"run": common.record(args.threads, seconds=seconds, stem=os.path.basename(args.out)), "rows": rows}
    common.write(args.out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
