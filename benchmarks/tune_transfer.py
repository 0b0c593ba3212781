"""Benchmark: Ray Tune (ASHA) picking the transfer configuration vs an exhaustive grid.

On the default ml-100k scenario (source drama, 5 sparse targets), per seed:
(a) the exhaustive grid: every arm of the default search space (no transfer, config-1..7, each frozen
    or fine-tuned: 15 trials per target) with full epochs (FIFO: only RecBole's early stopping ends a trial);
(b) the tuned search: the same space with the default ASHA scheduler.
Both go through ``run_search`` (one Ray trial per arm, 1 thread each, all cores), with the same global
seed, so a trial of (b) follows the same trajectory as the same arm of (a) until ASHA stops it.

After the searches, this script (not the searchers) computes the test HR@10 of every grid trial from its
best checkpoint, to find the oracle arm (best test HR@10 in (a)), and of the trials each selection rule
picks: the product's default (``scratch_margin: se``: a transfer arm must beat no transfer on validation
by one standard error) and plain argmax of the validation metric. Reported per target and seed: scratch,
the oracle, the picks of (a) and (b) under both rules, and the trial-epochs of (b) / (a).

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
from recbole_transfer.tune.search import _test_once, choose_winner, selection_margin  # noqa: E402

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
            done = run_dir + ".json"  # a finished search is reused: the benchmark can be rerun after a crash
            if os.path.isfile(done):
                with open(done, encoding="utf-8") as f:
                    saved = json.load(f)
                outcomes, wall = saved["outcomes"], saved["wall_s"]
            else:
                shutil.rmtree(run_dir, ignore_errors=True)
                start = time.time()
                outcomes = run_search(
                    config_file_list=[DEFAULT_SCENARIO], config_dict={"seed": seed}, search_space=space,
                    run_dir=run_dir, progress=lambda m: print(f"  {kind}-{seed} {m}", flush=True),
                )
                wall = time.time() - start
                with open(done, "w", encoding="utf-8") as f:
                    json.dump({"wall_s": wall, "outcomes": outcomes}, f, default=str)
            print(f"seed {seed} {kind}: {wall:.0f}s, {sum(o['trial_epochs'] for o in outcomes)} trial-epochs", flush=True)
            for out in outcomes:
                for row in out["rows"]:
                    rows.append({
                        "seed": seed, "kind": kind, "target": out["target"], "arm": row["label"], "label": row["label"],
                        "config": row["config"],
                        "index": row["index"], "best_valid": row["best_valid"], "epochs": row["epochs"],
                        "ended": row["ended"], "model_file": row["model_file"], "n_valid": out.get("n_valid"),
                        "test": None, "wall_s": wall,
                    })
    # Test HR@10 (computed here, never seen by a searcher): every grid trial (for the oracle) and, in the
    # tuned search, the trials either selection rule picks.
    n_valid = {(r["seed"], r["target"]): r["n_valid"] for r in rows if r["n_valid"]}
    for group in groups(rows).values():
        for r in group:
            r["n_valid"] = n_valid[(r["seed"], r["target"])]
        wanted = group if group[0]["kind"] == "grid" else [pick(group, rule) for rule in RULES]
        for r in wanted:
            if r is not None and r["test"] is None and r["model_file"]:
                r["test"] = _test_once(r["model_file"], threads)[METRIC]
    return rows


RULES = ("se", 0)  # the product's default (no transfer kept unless beaten by one standard error), plain argmax


def groups(rows):
    out = {}
    for r in rows:
        out.setdefault((r["seed"], r["kind"], r["target"]), []).append(r)
    return out


def pick(group, rule):
    return choose_winner(group, rule, group[0]["n_valid"])[0]


def tables(rows):
    by = groups(rows)
    seeds = sorted({r["seed"] for r in rows})
    targets = list(dict.fromkeys(r["target"] for r in rows))
    per_seed = ["| seed | target | scratch test | oracle arm | oracle test | grid pick (1-SE rule) | its test | "
                "tuned pick (1-SE rule) | its test | tuned pick (argmax) | its test | trial-epochs tuned / grid |",
                "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    summary = {}
    for seed in seeds:
        for target in targets:
            grid, asha = by[(seed, "grid", target)], by[(seed, "asha", target)]
            scratch = next(r["test"] for r in grid if r["arm"] == "none")
            oracle = max(grid, key=lambda r: r["test"] if r["test"] is not None else -1)
            gpick, tpick, tmax = pick(grid, "se"), pick(asha, "se"), pick(asha, 0)
            gmax = pick(grid, 0)
            ratio = sum(r["epochs"] for r in asha) / sum(r["epochs"] for r in grid)
            summary.setdefault(target, []).append(
                (scratch, oracle["test"], gmax["test"], gpick["test"], tmax["test"], tpick["test"], ratio))
            per_seed.append(
                f"| {seed} | {target} | {scratch:.4f} | {oracle['arm']} | {oracle['test']:.4f} | {gpick['arm']} | "
                f"{gpick['test']:.4f} | {tpick['arm']} | {tpick['test']:.4f} | {tmax['arm']} | {tmax['test']:.4f} | {ratio:.2f} |"
            )
    mean = ["| target | scratch | oracle arm (test-selected) | grid, argmax | grid, 1-SE rule | tuned, argmax | "
            "**tuned, 1-SE rule** | tuned vs oracle | tuned vs grid (1-SE) | tuned vs scratch | trial-epochs tuned / grid |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    stacked = []
    for target, vals in summary.items():
        stacked.append(np.array(vals))
        mean.append(_mean_row(target, stacked[-1].mean(axis=0)))
    grid_e = sum(r["epochs"] for r in rows if r["kind"] == "grid")
    asha_e = sum(r["epochs"] for r in rows if r["kind"] == "asha")
    total = np.concatenate(stacked).mean(axis=0)
    total[6] = asha_e / grid_e
    mean.append(_mean_row("**all**", total))
    worst = min(v[5] - v[0] for vals in stacked for v in vals)
    noise = []  # one standard error of scratch's validation HR@10, sqrt(s(1-s)/n): the 1-SE rule's margin
    for target in targets:
        grid = [r for r in rows if r["kind"] == "grid" and r["target"] == target and r["arm"] == "none"]
        se = np.mean([selection_margin("se", r["best_valid"], r["n_valid"]) for r in grid])
        noise.append(f"{target} n={grid[0]['n_valid']} SE={se:.3f}")
    walls = {(r["seed"], r["kind"]): r["wall_s"] for r in rows}
    wall = (f"Wall time per seed (5 targets, Ray on all cores): grid {np.mean([w for (s, k), w in walls.items() if k == 'grid']):.0f}s, "
            f"tuned {np.mean([w for (s, k), w in walls.items() if k == 'asha']):.0f}s. "
            f"Worst single (seed, target) of the tuned 1-SE pick vs scratch: {worst:+.4f} HR@10. "
            f"Validation users and one standard error of scratch's validation HR@10 (mean over seeds): {'; '.join(noise)}.")
    title = f"Test HR@10, mean of {len(seeds)} seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))})"
    return f"{title}\n\n" + "\n".join(mean) + "\n\n" + wall + "\n\nPer seed\n\n" + "\n".join(per_seed)


def _mean_row(name, m):
    scratch, oracle, gmax, gse, tmax, tse, ratio = m
    pct = lambda a, b: f"{100 * (a - b) / b:+.1f}%"  # noqa: E731
    return (f"| {name} | {scratch:.4f} | {oracle:.4f} | {gmax:.4f} | {gse:.4f} | {tmax:.4f} | **{tse:.4f}** | "
            f"{pct(tse, oracle)} | {pct(tse, gse)} | {pct(tse, scratch)} | {ratio:.2f} |")


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
    rows = run(args.seeds, args.work, args.threads)
    searches = sum({(r["seed"], r["kind"]): r["wall_s"] for r in rows}.values())
    env = (f"python {platform.python_version()}, {os.cpu_count()} cores, 1 torch thread per trial; "
           f"the {2 * len(args.seeds)} searches took {searches:.0f}s in all (each timed when it ran)")
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out + ".json", "w", encoding="utf-8") as f:
        json.dump({"env": env, "rows": rows}, f, indent=1)
    text = tables(rows)
    print("\n" + text + "\n\n" + env)
    with open(args.out + ".md", "w", encoding="utf-8") as f:
        f.write("Command: `OMP_NUM_THREADS=1 python benchmarks/tune_transfer.py`\n\n" + text + "\n\n" + env + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
