"""Benchmark: Ray Tune (ASHA) picking the transfer configuration vs an exhaustive grid, on one split per data seed.

On the default ml-100k scenario (source drama, 5 sparse targets), per data seed:
(a) the exhaustive grid: every arm of the default search space (no transfer, config-1..7, each frozen
    or fine-tuned: 15 trials per target) with full epochs (FIFO: only RecBole's early stopping ends a trial);
(b) the tuned search: the same space with the default ASHA scheduler.
Both go through ``run_search`` with the same global seed: every trial of both searches trains and is
validated on the same data (the seed is the searches' data seed; each trial's training seed is derived from
it and the trial's configuration, so an arm of (b) follows the same trajectory as in (a) until ASHA stops it).

After the searches, this script (never the searchers) computes the TEST metrics from the best checkpoints,
on the same protocol: every grid trial (to find the oracle: the arm with the best test HR@10, an upper
bound no validation-based choice reaches) and each search's pick under the product's rule (a transfer arm
must beat no transfer on validation by one paired standard error) and plain argmax. Reported per (data seed,
target) in ``picks``: scratch, oracle, the grid's pick and the tuned pick, all on the same test set, the
trial-epochs ratio and ``same_split`` (every trial of both searches and every test evaluation saw the same
split and candidates: equal data fingerprints); and the share of the oracle's gain over scratch that the tuned
pick captures. ``--tables_from`` rebuilds every table from the JSON alone: ``picks`` names each pick, and the
rows keep the test values of every evaluated trial (no checkpoint is read).

    OMP_NUM_THREADS=1 python benchmarks/tune_transfer.py                    # 3 data seeds
    OMP_NUM_THREADS=1 python benchmarks/tune_transfer.py --seeds 2020 --out /tmp/quick
    python benchmarks/tune_transfer.py --tables_from benchmarks/results/tune_transfer.json
"""

import os
import platform
import shutil
import sys
import time

import numpy as np

from recbole_transfer.logs import quiet_logging
from recbole_transfer.registry import get_method
from recbole_transfer.report import markdown
from recbole_transfer.stats import paired_se, paired_strata

import _common as common

METHOD = get_method("layer_transfer")
DEFAULT_SCENARIO = METHOD.scenario
METRIC = "hit@10"
RULES = ("se", 0)  # the product's default (a transfer arm must beat no transfer by one paired SE), plain argmax


def grid_space(path):
    """The default space with the FIFO scheduler: every arm runs until RecBole's early stopping."""
    import yaml

    from recbole_transfer.tune import SearchSpace

    spec = yaml.safe_load(open(SearchSpace.from_file(method=METHOD).path, encoding="utf-8"))
    spec["scheduler"] = {"type": "fifo"}
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False)
    return path


def evaluate_test(model_file, threads):
    """Test metric, per-user values, user ids and data fingerprint of a checkpoint, on its own protocol."""
    from recbole_transfer.data import Protocol
    from recbole_transfer.pipeline.two_stage import load_transfer_model
    from recbole_transfer.trainer import TransferTrainer

    config, model, _dataset, train, valid, test = load_transfer_model(model_file, {"num_threads": threads})
    trainer = TransferTrainer(config, model, stage="analysis")
    result = trainer.evaluate(test, load_best_model=False)
    return float(result[METRIC]), trainer.last_per_user[METRIC], trainer.last_users, Protocol.fingerprint(train, valid, test)


def run(seeds, work, threads):
    from recbole_transfer.tune import run_search

    rows = []
    os.makedirs(work, exist_ok=True)
    fifo = grid_space(os.path.join(work, "grid_space.yaml"))
    for seed in seeds:
        for kind, space in (("grid", fifo), ("asha", None)):
            run_dir = os.path.join(work, f"{kind}-{seed}")

            def search():
                shutil.rmtree(run_dir, ignore_errors=True)
                start = time.time()
                outcomes = run_search(
                    config_file_list=[DEFAULT_SCENARIO], config_dict={"seed": seed}, search_space=space,
                    run_dir=run_dir, progress=lambda m: print(f"  {kind}-{seed} {m}", flush=True),
                )
                return {"wall_s": time.time() - start, "outcomes": outcomes}

            done = common.part(run_dir + ".json", search)  # a finished search is reused: rerun after a crash
            outcomes, wall = done["outcomes"], done["wall_s"]
            print(f"seed {seed} {kind}: {wall:.0f}s, {sum(o['trial_epochs'] for o in outcomes)} trial-epochs", flush=True)
            for out in outcomes:
                for row in out["rows"]:
                    rows.append({
                        "seed": seed, "kind": kind, "target": out["target"], "arm": row["label"], "label": row["label"],
                        "config": row["config"], "index": row["index"], "best_valid": row["best_valid"],
                        "epochs": row["epochs"], "ended": row["ended"], "model_file": row["model_file"],
                        "fingerprint": row["fingerprint"], "search_fingerprint": out["fingerprint"],
                        "same_split": out["same_split"], "n_valid": out["n_valid"], "test": None, "test_fingerprint": None,
                        "wall_s": wall,
                    })
    # Test HR@10, computed here and never seen by a searcher: every grid trial (for the oracle) and, in the
    # tuned search, the trials either rule picks.
    for group in groups(rows).values():
        wanted = group if group[0]["kind"] == "grid" else [pick(group, rule) for rule in RULES]
        for r in wanted:
            if r is not None and r["test"] is None and r["model_file"]:
                r["test"], r["test_per_user"], r["test_users"], r["test_fingerprint"] = evaluate_test(r["model_file"], threads)
    return rows


def groups(rows):
    out = {}
    for r in rows:
        out.setdefault((r["seed"], r["kind"], r["target"]), []).append(r)
    return out


def pick(group, rule):
    from recbole_transfer.tune.search import choose_winner, valid_differences

    return choose_winner(group, rule, valid_differences(f"valid_{METRIC}"), METHOD.is_baseline)[0]


def picks_of(rows):
    """One entry per (data seed, target): the four arms' test HR@10 on the same test set, and the costs."""
    by = groups(rows)
    out = []
    for (seed, kind, target), grid in by.items():
        if kind != "grid":
            continue
        asha = by[(seed, "asha", target)]
        scratch = next(r for r in grid if r["arm"] == "none")
        oracle = max(grid, key=lambda r: r["test"] if r["test"] is not None else -1)
        gpick, tpick, tmax = pick(grid, "se"), pick(asha, "se"), pick(asha, 0)
        evaluated = [r for r in grid + [tpick, tmax] if r["test_fingerprint"]]
        reported = [r for r in grid + asha if r["best_valid"] is not None]
        same = (len({r["fingerprint"] for r in reported} | {r["search_fingerprint"] for r in grid + asha}) == 1
                and len({r["test_fingerprint"] for r in evaluated}) == 1 and all(r["same_split"] for r in grid + asha))
        diff = np.subtract(tpick["test_per_user"], scratch["test_per_user"])
        out.append({
            "data_seed": seed, "target": target,
            "scratch_test": scratch["test"], "oracle_test": oracle["test"], "oracle_arm": oracle["arm"],
            "grid_pick_test": gpick["test"], "grid_pick_arm": gpick["arm"],
            "tuned_test": tpick["test"], "tuned_arm": tpick["arm"],
            "tuned_argmax_test": tmax["test"], "tuned_argmax_arm": tmax["arm"],
            "tuned_minus_scratch": float(diff.mean()), "paired_se": paired_se(diff),
            "compute_ratio": sum(r["epochs"] for r in asha) / sum(r["epochs"] for r in grid),
            "grid_trial_epochs": sum(r["epochs"] for r in grid), "tuned_trial_epochs": sum(r["epochs"] for r in asha),
            "n_test": int(len(diff)), "same_split": bool(same),
        })
    return out


def share(picks, key):
    """Share of the oracle's gain over scratch that ``key`` captures: sum of its gains / sum of the oracle's."""
    gain = sum(p["oracle_test"] - p["scratch_test"] for p in picks)
    return sum(p[key] - p["scratch_test"] for p in picks) / gain if gain else float("nan")


def tuned_vs_scratch(chosen, by_groups):
    """:class:`PairedDiff` of the tuned pick minus scratch over the ``chosen`` picks: per target, each user's
    difference averaged over the data seeds that tested her; targets as strata. ``by_groups``: :func:`groups`."""
    strata = []
    for target in dict.fromkeys(p["target"] for p in chosen):
        pairs = []
        for p in chosen:
            if p["target"] != target:
                continue
            grid, asha = by_groups[(p["data_seed"], "grid", target)], by_groups[(p["data_seed"], "asha", target)]
            scratch = next(r for r in grid if r["arm"] == "none")
            tuned = next(r for r in asha if r["arm"] == p["tuned_arm"])
            assert scratch["test_users"] == tuned["test_users"], "tuned pick and scratch tested on other users"
            pairs.append((np.asarray(scratch["test_users"]), np.subtract(tuned["test_per_user"], scratch["test_per_user"])))
        strata.append(pairs)
    return paired_strata(strata)


def tables(picks, rows, shared=None):
    """The tables of the ``picks`` (one per data seed and target, :func:`picks_of`) and the searches' ``rows``."""
    by_pick = {(p["data_seed"], p["target"]): p for p in picks}
    targets = list(dict.fromkeys(p["target"] for p in picks))
    seeds = sorted({p["data_seed"] for p in picks})
    head = []
    by_groups = groups(rows)
    for target in targets + ["**all**"]:
        chosen = [p for p in picks if target in (p["target"], "**all**")]
        mean = lambda key: np.mean([p[key] for p in chosen])  # noqa: E731
        epochs = sum(p["tuned_trial_epochs"] for p in chosen) / sum(p["grid_trial_epochs"] for p in chosen)
        head.append([target, f"{mean('scratch_test'):.4f}", f"{mean('oracle_test'):.4f}", f"{mean('grid_pick_test'):.4f}",
                     f"{mean('tuned_test'):.4f}", f"{mean('tuned_argmax_test'):.4f}", tuned_vs_scratch(chosen, by_groups).cell(),
                     f"{100 * share(chosen, 'tuned_test'):.0f} %", f"{epochs:.2f}"])
    per = []
    below = 0
    for seed in seeds:
        for target in targets:
            p = by_pick[(seed, target)]
            worse = p["tuned_minus_scratch"] < -p["paired_se"]
            below += worse
            per.append([seed, target, f"{p['scratch_test']:.4f}", p["oracle_arm"], f"{p['oracle_test']:.4f}",
                        p["grid_pick_arm"], f"{p['grid_pick_test']:.4f}", p["tuned_arm"], f"{p['tuned_test']:.4f}",
                        f"{p['tuned_minus_scratch']:+.4f} ({p['paired_se']:.4f})", "YES" if worse else "no",
                        f"{p['compute_ratio']:.2f}", p["same_split"]])
    walls = {(r["seed"], r["kind"]): r["wall_s"] for r in rows}
    compute = sum(p["tuned_trial_epochs"] for p in picks) / sum(p["grid_trial_epochs"] for p in picks)
    summary = (
        f"Share of the oracle's gain over scratch captured: tuned pick {100 * share(picks, 'tuned_test'):.0f} %, "
        f"grid pick {100 * share(picks, 'grid_pick_test'):.0f} %, tuned argmax {100 * share(picks, 'tuned_argmax_test'):.0f} %; "
        f"trial-epochs tuned / grid {compute:.2f}; tuned pick below scratch by more than one paired SE in {below} of "
        f"{len(picks)} (data seed, target) pairs; same split and candidates in every pair: {all(p['same_split'] for p in picks)}. "
        f"Wall time per data seed (5 targets, Ray on all cores): grid {np.mean([w for (s, k), w in walls.items() if k == 'grid']):.0f}s, "
        f"tuned {np.mean([w for (s, k), w in walls.items() if k == 'asha']):.0f}s."
    )
    summary += (" Data shared with benchmarks/results/layer_transfer.json (same data seeds): "
                f"{shared if shared else '?'} (data seed, target) fingerprints equal.")
    title = f"Test HR@10, mean of {len(seeds)} data seed{'s' if len(seeds) > 1 else ''} ({', '.join(map(str, seeds))}); every column on the same test set"
    head = markdown(["target", "scratch", "oracle (test-selected)", "grid pick (1-SE)", "tuned pick (1-SE)",
                     "tuned pick (argmax)", "tuned - scratch, paired [95% CI]", "share of the oracle's gain captured (tuned)",
                     "trial-epochs tuned / grid"], head)
    per = markdown(["data seed", "target", "scratch", "oracle arm", "oracle", "grid pick", "its test", "tuned pick",
                    "its test", "tuned - scratch (paired SE)", "below scratch by > 1 paired SE", "trial-epochs tuned / grid",
                    "same split"], per)
    return f"{title}\n\n{head}\n\n{summary}\n\nPer data seed\n\n{per}"


def shared_fingerprints(rows):
    """'k of n': how many (data seed, target) of these searches trained on the data the layer-transfer benchmark's
    results file records (the same scenario and data seeds); kept with the run, since that file is rerun on its own."""
    layer = os.path.join(common.RESULTS, "layer_transfer.json")
    if not os.path.isfile(layer):
        return None
    theirs = {(r["seed"], r["target"]): r["fingerprint"] for r in common.load(layer)["rows"] if r.get("fingerprint")}
    ours = {(r["seed"], r["target"]): r["search_fingerprint"] for r in rows}
    shared = [k for k in ours if k in theirs]
    return f"{sum(ours[k] == theirs[k] for k in shared)} of {len(shared)}"


def report(saved):
    """The results file's Markdown, from the saved picks, rows and environment line alone."""
    return ("Command: `OMP_NUM_THREADS=1 python benchmarks/tune_transfer.py`\n\n"
            + tables(saved["picks"], saved["rows"], saved.get("shared_fingerprints"))
            + "\n\n" + saved["env"] + "\n")


def main(argv=None):
    p = common.parser("tune_transfer", __doc__, seeds=[2020, 2021, 2022])
    p.add_argument("--work", default=os.path.abspath("saved/bench_tune"), help="run directories of the searches")
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    quiet_logging()  # before Ray is imported (through recbole_transfer.tune): its pkg_resources warning
    rows = run(args.seeds, args.work, args.threads)
    searches = sum({(r["seed"], r["kind"]): r["wall_s"] for r in rows}.values())
    env = (f"python {platform.python_version()}, {os.cpu_count()} cores, {args.threads} torch thread per trial; "
           f"the {2 * len(args.seeds)} searches took {searches:.0f}s in all (each timed when it ran)")
    saved = {"run": common.record(args.threads), "env": env, "picks": picks_of(rows), "rows": rows,
             "shared_fingerprints": shared_fingerprints(rows)}
    common.write(args.out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
