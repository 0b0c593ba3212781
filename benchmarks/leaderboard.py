"""Benchmark: the leaderboard at three data seeds, every family that ships a ``leaderboard.yaml``.

It runs what ``run_recbole_transfer.py --leaderboard --seeds="[2020,2021,2022]"`` runs: each family's trimmed default
scenario; every arm (popularity, ItemKNN, EASE, the family's scratch model, its transfer arms) tuned on validation with
the same number of trials through the Ray driver; per scenario the best transfer arm against the best baseline arm,
both picked on validation, paired per user on test over the three data seeds. The README's headline table is this
file's first table.

    OMP_NUM_THREADS=1 python benchmarks/leaderboard.py                       # every family, data seeds 2020-2022
    OMP_NUM_THREADS=1 python benchmarks/leaderboard.py --families overlap_cdr --seeds 2020 --out /tmp/lb
    python benchmarks/leaderboard.py --tables_from benchmarks/results/leaderboard.json

Writes results/leaderboard.md, .json (one row per family, scenario, target, arm and data seed) and .png. Finished arms
are kept under saved/leaderboard, where --leaderboard keeps them too (a rerun resumes them).
"""

import os
import time

import _common as common


def report(saved):
    from recbole_transfer.tune.leaderboard import leaderboard_report

    run = saved["run"]
    return (f"Leaderboard ({common.machine(run)}; {run['threads']} torch thread; families {', '.join(run['families'])}; "
            f"data seeds {', '.join(map(str, run['seeds']))}; budget per arm: each family's leaderboard.yaml; "
            f"wall time {common.number(run.get('seconds'))} s{_resumed(saved['rows'])})\n\n" + leaderboard_report(saved["rows"]) + "\n")


def _resumed(rows):
    """How many arm runs this invocation took from saved/leaderboard (their seconds are the earlier run's)."""
    runs = {(r["family"], r["data_seed"], r["arm"]): r.get("resumed") for r in rows}
    if not any(runs.values()):
        return ""
    total = sum(r["seconds"] for r in rows)
    return (f"; {sum(map(bool, runs.values()))} of {len(runs)} arm runs resumed from saved/leaderboard, where an earlier "
            f"invocation finished them; all arms' own seconds: {total:.0f} s")


def main(argv=None):
    p = common.parser("leaderboard", __doc__, seeds=[2020, 2021, 2022])
    p.add_argument("--families", nargs="+", default=None, help="default: every family with a leaderboard.yaml")
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    common.measuring(args.threads)
    from recbole_transfer.tune.leaderboard import families, run_leaderboard, write_leaderboard

    names = args.families or [m.name for m in families()]
    start = time.time()
    rows = run_leaderboard(names, args.seeds, work_dir=os.path.join("saved", "leaderboard"), progress=print)
    saved = {"rows": rows, "run": common.record(args.threads, families=names, seeds=args.seeds,
                                                seconds=time.time() - start)}
    write_leaderboard(args.out, rows, {"run": saved["run"]})  # the plot (and the same rows)
    common.write(args.out, report(saved), saved)  # the JSON and the Markdown, with the run's record
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
