"""Benchmark: Ray Tune (ASHA) picking the transfer configuration vs an exhaustive grid.

On the default ml-100k scenario (source drama, 5 sparse targets), per seed:
(a) the exhaustive grid: every arm of the default search space (no transfer, config-1..7, each frozen
    or fine-tuned: 15 trials per target) with full epochs (FIFO: only RecBole's early stopping ends a trial);
(b) the tuned search: the same space with the default ASHA scheduler.
Both go through ``run_search`` (one Ray trial per arm, 1 thread each, all cores), with the same global
seed, so a trial of (b) follows the same trajectory as the same arm of (a) until ASHA stops it.

After the searches, this script (not the searchers) computes the test HR@10 of every grid trial from its
best checkpoint, to find the oracle arm (best test HR@10 in (a)). Reported per target and seed: the
oracle, the grid's own validation pick, the tuned pick, scratch, and the trial-epochs of (b) / (a).

    OMP_NUM_THREADS=1 python benchmarks/tune_transfer.py                    # 3 seeds
    OMP_NUM_THREADS=1 python benchmarks/tune_transfer.py --seeds 2020 --out /tmp/quick
    python benchmarks/tune_transfer.py --tables_from benchmarks/results/tune_transfer.json
"""

import argparse
import json
import os
import platform
import shutil
import sys
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
warnings.filterwarnings("ignore", category=FutureWarning)

from recbole_transfer.scenario import DEFAULT_SCENARIO  # noqa: E402
from recbole_transfer.tune import SearchSpace, run_search  # noqa: E402
from recbole_transfer.tune.search import _test_once  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
METRIC = "hit@10"


def grid_space(path):
    """The default space with the FIFO scheduler: every arm runs until RecBole's early stopping."""
    import yaml

    spec = yaml.safe_load(open(SearchSpace.from_file().path, encoding="utf-8"))
    spec["scheduler"] = {"type": "fifo"}
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return path


def run(seeds, work, threads):
    rows = []
    os.makedirs(work, exist_ok=True)
    fifo = grid_space(os.path.join(work, "grid_space.yaml"))
    for seed in seeds:
        for kind, space in (("grid", fifo), ("asha", None)):
            run_dir = os.path.join(work, f"{kind}-{seed}")
            shutil.rmtree(run_dir, ignore_errors=True)
            start = time.time()
            outcomes = run_search(
                config_file_list=[DEFAULT_SCENARIO], config_dict={"seed": seed}, search_space=space,
                run_dir=run_dir, progress=lambda m: print(f"  {kind}-{seed} {m}", flush=True),
            )
            wall = time.time() - start
            print(f"seed {seed} {kind}: {wall:.0f}s, {sum(o['trial_epochs'] for o in outcomes)} trial-epochs", flush=True)
            for out in outcomes:
                for row in out["rows"]:
                    test = None
                    if kind == "grid" and row["model_file"]:
                        test = _test_once(row["model_file"], threads)[METRIC]
                    rows.append({
                        "seed": seed, "kind": kind, "target": out["target"], "arm": row["label"],
                        "valid": row["best_valid"], "epochs": row["epochs"], "ended": row["ended"],
                        "test": test, "picked": bool(out["best"] and row["label"] == out["best"]["label"]),
                        "picked_test": out["test_result"].get(METRIC) if out["best"] and row["label"] == out["best"]["label"] else None,
                        "wall_s": wall,
                    })
    return rows


def tables(rows):
    seeds = sorted({r["seed"] for r in rows})
    targets = list(dict.fromkeys(r["target"] for r in rows))
    per_seed = ["| seed | target | scratch test | oracle arm | oracle test | grid pick (valid) | its test | tuned pick | its test | tuned vs oracle | trial-epochs tuned / grid |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for seed in seeds:
        for target in targets:
            grid = [r for r in rows if r["seed"] == seed and r["kind"] == "grid" and r["target"] == target]
            asha = [r for r in rows if r["seed"] == seed and r["kind"] == "asha" and r["target"] == target]
            scratch = next(r["test"] for r in grid if r["arm"] == "none")
            oracle = max(grid, key=lambda r: r["test"] if r["test"] is not None else -1)
            gpick = next(r for r in grid if r["picked"])
            tpick = next(r for r in asha if r["picked"])
            ratio = sum(r["epochs"] for r in asha) / sum(r["epochs"] for r in grid)
            gap = 100.0 * (tpick["picked_test"] - oracle["test"]) / oracle["test"]
            summary.setdefault(target, []).append((scratch, oracle["test"], gpick["test"], tpick["picked_test"], ratio))
            per_seed.append(
                f"| {seed} | {target} | {scratch:.4f} | {oracle['arm']} | {oracle['test']:.4f} | {gpick['arm']} | "
                f"{gpick['test']:.4f} | {tpick['arm']} | {tpick['picked_test']:.4f} | {gap:+.1f}% | {ratio:.2f} |"
            )
    mean = ["| target | scratch test | oracle test | grid-pick test | tuned-pick test | tuned vs oracle | tuned vs scratch | trial-epochs tuned / grid |",
            "|---|---|---|---|---|---|---|---|"]
    all_vals = []
    for target, vals in summary.items():
        v = np.array(vals)
        m = v.mean(axis=0)
        all_vals.append(v)
        mean.append(f"| {target} | {m[0]:.4f} | {m[1]:.4f} | {m[2]:.4f} | {m[3]:.4f} | {100 * (m[3] - m[1]) / m[1]:+.1f}% | "
                    f"{100 * (m[3] - m[0]) / m[0]:+.1f}% | {m[4]:.2f} |")
    v = np.concatenate(all_vals).mean(axis=0)
    grid_e = sum(r["epochs"] for r in rows if r["kind"] == "grid")
    asha_e = sum(r["epochs"] for r in rows if r["kind"] == "asha")
    mean.append(f"| **all** | {v[0]:.4f} | {v[1]:.4f} | {v[2]:.4f} | {v[3]:.4f} | {100 * (v[3] - v[1]) / v[1]:+.1f}% | "
                f"{100 * (v[3] - v[0]) / v[0]:+.1f}% | {asha_e / grid_e:.2f} |")
    walls = {}
    for r in rows:
        walls[(r["seed"], r["kind"])] = r["wall_s"]
    wall = (f"Wall time per seed (5 targets, Ray on all cores): grid {np.mean([w for (s, k), w in walls.items() if k == 'grid']):.0f}s, "
            f"tuned {np.mean([w for (s, k), w in walls.items() if k == 'asha']):.0f}s")
    title = f"Test HR@10, mean of {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"
    return f"{title}\n\n" + "\n".join(mean) + "\n\n" + wall + "\n\nPer seed\n\n" + "\n".join(per_seed)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    p.add_argument("--out", default=os.path.join(HERE, "results", "tune_transfer"))
    p.add_argument("--work", default=os.path.abspath("saved/bench_tune"), help="run directories of the searches")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tables_from", default=None, help="rebuild the tables from a saved JSON, no training")
    args = p.parse_args()
    if args.tables_from:
        with open(args.tables_from, encoding="utf-8") as f:
            print(tables(json.load(f)["rows"]))
        return 0
    start = time.time()
    rows = run(args.seeds, args.work, args.threads)
    text = tables(rows)
    env = f"python {platform.python_version()}, {os.cpu_count()} cores, 1 torch thread per trial, total {time.time() - start:.0f}s"
    print("\n" + text + "\n\n" + env)
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump({"wall_s": time.time() - start, "env": env, "rows": rows}, f, indent=1)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("Command: `OMP_NUM_THREADS=1 python benchmarks/tune_transfer.py`\n\n" + text + "\n\n" + env + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
