"""Benchmark: what a run costs as the data grows, from 100k to 10M interactions, as a user runs it.

Data: :func:`recbole_transfer.data.synthetic.write_scale_pair` at each size N (written once per size under
``--data_root``): a target of about N interactions (N / 20 users, N / 100 items, Zipf item popularity, lognormal user
activity, every user with at least 5 rows) and a source of the same shape sharing 90 % of the target's users (items of
its own). Each command is ``run_recbole_transfer.py`` with the arguments in :data:`COMMANDS` plus ``--epochs E``, in a
fresh process (``OMP_NUM_THREADS=1``) with a fresh protocol folder; every line it prints is time-stamped as it
arrives. Measured per (command, size):

- ``wall_s``: the process from start to exit (imports included);
- ``train_s_per_epoch`` and ``eval_s_per_pass``: the means of RecBole's ``epoch N training [time: ...]`` and
  ``epoch N evaluating [time: ...]`` lines (a two-stage command: both stages' epochs);
- ``setup_s``: from the start to the beginning of the first training epoch (loading, filtering, splitting, drawing
  candidates, building the model; a two-stage command: the target's set-up and the source's);
- ``test_s``: from the last epoch's line to the exit (loading the best checkpoint, the test pass, the report);
- ``peak_rss_gb``: the process's peak resident memory (``wait4``); ``protocol_mb``: the protocol folder's size;
- ``silent_s``: the longest time between two printed lines (a user watching the run sees nothing for that long).

``--cached``: commands run a second time on the protocol folder the first run wrote (``run: 2`` rows). A command that
fails (EASE refusing an item count whose matrix does not fit) or passes ``--timeout`` keeps its status and its last
lines. ``exponents``: per command, the slope of log(cost) against log(rows) from 400k rows to the largest size
measured (``--fit_from``), for train, eval, wall and peak RSS.

``parallel`` (run by default after the sizes; ``--workers 0`` leaves it out): the overlap family's default scenario
on the bundled ml-100k pair (``--model=CMF --scenario``, one data seed, its own epochs: ``--epochs`` and
``--train_batch_size`` do not apply), run one unit after another and then with ``--workers=K`` (default 2), each in
a fresh folder: both wall times, the speed-up, whether the rows are identical (but for wall times and checkpoint
paths), and the driver process's peak RSS (the Ray workers are other processes).

    OMP_NUM_THREADS=1 python benchmarks/scale.py                                   # every command, 100k .. 10M, then parallel
    OMP_NUM_THREADS=1 python benchmarks/scale.py --sizes 100000 400000 --commands "BPR full" "BPR full, sparse_tables"
    OMP_NUM_THREADS=1 python benchmarks/scale.py --commands --out /tmp/parallel     # only the --workers comparison
    python benchmarks/scale.py --tables_from benchmarks/results/scale.json

Each finished (command, size, run) is kept in <out>.parts/<command>.<size>.<run>.json and reused by a rerun. Writes
<out>.json (the run record, ``rows`` and ``exponents``), <out>.md (the tables) and <out>.png (log-log plot).
"""

import json
import math
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import time

import _common as common
from recbole_transfer.report import markdown

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENTRY = os.path.join(HERE, "run_recbole_transfer.py")
SIZES = (100_000, 400_000, 1_600_000, 6_000_000, 10_000_000)
FULL = "--eval_args={'mode': 'full'}"
COMMANDS = {  # name -> arguments of run_recbole_transfer.py (the data, epochs and folders are added)
    "BPR full": ["--model=BPR", "--target=stgt", FULL],
    "BPR full, sparse_tables": ["--model=BPR", "--target=stgt", FULL, "--sparse_tables=True"],
    "BPR uni99": ["--model=BPR", "--target=stgt"],
    "BPR uni99, candidate_draw arrays": ["--model=BPR", "--target=stgt", "--candidate_draw=arrays"],
    "CMF full": ["--model=CMF", "--source=ssrc", "--target=stgt"],
    "CMF full, sparse_tables": ["--model=CMF", "--source=ssrc", "--target=stgt", "--sparse_tables=True"],
    "TransferMLP config-5 uni99": ["--model=TransferMLP", "--source=ssrc", "--target=stgt", "--transfer=config-5"],
    "EASE full": ["--model=EASE", "--target=stgt", FULL],
    "CrossEASE full": ["--model=CrossEASE", "--source=ssrc", "--target=stgt"],
    "ItemKNN full": ["--model=ItemKNN", "--target=stgt", FULL],
}
COSTS = {"train": "train_s_per_epoch", "eval": "eval_s_per_pass", "wall": "wall_s", "rss": "peak_rss_gb",
         "eval_per_score": "eval_ns_per_score"}


def scores_per_pass(row):
    """User-item scores one evaluation pass computes: every target user against every item (full ranking) or
    against its 100 candidates (uni99). Full ranking's work grows as users x items, so as rows^2 here."""
    return row["target_users"] * (100 if "uni99" in row["command"] else row["target_items"])


def per_score(row):
    """``eval_ns_per_score``: the evaluation pass's nanoseconds per user-item score (None without a pass)."""
    value = row.get("eval_s_per_pass")
    return {**row, "eval_ns_per_score": None if value is None else value * 1e9 / scores_per_pass(row)}
_TRAIN = re.compile(r"epoch \d+ training \[time: ([\d.]+)s")
_EVAL = re.compile(r"epoch \d+ evaluating \[time: ([\d.]+)s")


def folder_mb(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files) / 2 ** 20


def timed(args, work, timeout):
    """``run_recbole_transfer.py args`` in its own process in the folder ``work``, every printed line time-stamped as
    it arrives: (lines as (seconds since start, text), status, wall seconds, the child's resource usage)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    start = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-u", ENTRY, *args], cwd=work, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines, status = [], "ok"
    watch = selectors.DefaultSelector()
    watch.register(child.stdout, selectors.EVENT_READ)
    while True:
        if time.perf_counter() - start > timeout:
            child.kill()
            status = f"timeout after {timeout} s"
            break
        if not watch.select(timeout=1.0):
            continue
        line = child.stdout.readline()
        if not line:
            break
        lines.append((time.perf_counter() - start, line.rstrip()))
    _pid, code, usage = os.wait4(child.pid, 0)
    if status == "ok" and code != 0:
        status = f"exit {os.waitstatus_to_exitcode(code)}"
    return lines, status, time.perf_counter() - start, usage


def measure(name, size, data, epochs, batch, timeout, work):
    """One command on the pair at ``data``, in its own process run in the folder ``work`` (its protocols, checkpoints
    and logs go there); the row of what it cost."""
    protocol_dir = os.path.join(work, "protocols")
    lines, status, wall, usage = timed(
        [*COMMANDS[name], f"--data_path={data}", f"--epochs={epochs}", f"--train_batch_size={batch}",
         f"--protocol_dir={protocol_dir}", "--show_progress=False", f"--checkpoint_dir={os.path.join(work, 'saved')}"],
        work, timeout)
    train = [(t, float(m.group(1))) for t, line in lines for m in [_TRAIN.search(line)] if m]
    valid = [(t, float(m.group(1))) for t, line in lines for m in [_EVAL.search(line)] if m]
    stamps = [0.0] + [t for t, _ in lines] + [wall]
    last_epoch = max([t for t, _ in train + valid], default=None)
    return {
        "command": name, "rows": size, "status": status, "wall_s": wall,
        "train_s_per_epoch": sum(s for _, s in train) / len(train) if train else None,
        "eval_s_per_pass": sum(s for _, s in valid) / len(valid) if valid else None,
        "epochs": len(train), "setup_s": train[0][0] - train[0][1] if train else None,
        "test_s": wall - last_epoch if last_epoch is not None and status == "ok" else None,
        "peak_rss_gb": usage.ru_maxrss * 1024 / 2 ** 30, "protocol_mb": folder_mb(protocol_dir),
        "silent_s": max(b - a for a, b in zip(stamps, stamps[1:])),
        "argv": " ".join(COMMANDS[name]), "tail": [line for _, line in lines[-6:]] if status != "ok" else [],
    }


PARALLEL = ["--model=CMF", "--scenario"]  # the overlap family's default scenario on the bundled ml-100k pair


def measure_parallel(workers, seed, timeout, progress):
    """The overlap family's default scenario (one data seed), run one unit after another and then with
    ``--workers``, each in a fresh folder (its own domains and protocol draw): both wall times, their ratio, and
    whether every row is equal but for wall times and checkpoint paths (:func:`~recbole_transfer.pipeline.parallel.
    comparable`)."""
    from recbole_transfer.pipeline.parallel import comparable

    runs = {}
    for label, extra in (("sequential", []), ("parallel", [f"--workers={workers}"])):
        work = tempfile.mkdtemp(prefix="scale_parallel_")
        progress(f"{' '.join(PARALLEL)} --seeds=[{seed}] {' '.join(extra)} ...")
        lines, status, wall, usage = timed(
            [*PARALLEL, f"--seeds=[{seed}]", *extra, f"--output={os.path.join(work, 'rows')}",
             f"--protocol_dir={os.path.join(work, 'protocols')}", f"--checkpoint_dir={os.path.join(work, 'saved')}",
             f"--domain_cache_dir={os.path.join(work, 'domains')}"], work, timeout)
        rows, written = None, os.path.join(work, "rows.json")
        if status == "ok" and not os.path.isfile(written):
            status = "no rows written"
        if status == "ok":
            with open(written, encoding="utf-8") as f:
                rows = json.load(f)
        runs[label] = {"status": status, "wall_s": wall, "driver_peak_rss_gb": usage.ru_maxrss * 1024 / 2 ** 30,
                       "runs": None if rows is None else len(rows), "rows": rows,
                       "tail": [line for _, line in lines[-6:]] if status != "ok" else []}
        progress(f"  {status}: wall {wall:.1f} s, {runs[label]['runs']} runs")
        shutil.rmtree(work, ignore_errors=True)
    one, many = runs["sequential"], runs["parallel"]
    identical = (one["rows"] is not None and many["rows"] is not None and len(one["rows"]) == len(many["rows"])
                 and all(comparable(a) == comparable(b) for a, b in zip(one["rows"], many["rows"])))
    for run in runs.values():
        del run["rows"]
    return {"command": " ".join(PARALLEL), "seed": seed, "workers": workers, "sequential": one, "parallel": many,
            "speedup": one["wall_s"] / many["wall_s"] if one["status"] == many["status"] == "ok" else None,
            "identical_rows": identical}


def pair_at(root, size, progress):
    """The scale pair of ``size`` rows under ``root`` (written once); its counts."""
    from recbole_transfer.data.synthetic import write_scale_pair

    folder = os.path.join(root, f"n{size}")
    counts_file = os.path.join(folder, "counts.json")
    if not os.path.isfile(counts_file):
        start = time.perf_counter()
        counts = write_scale_pair(folder, size)
        with open(counts_file, "w", encoding="utf-8") as f:
            json.dump(counts, f)
        progress(f"wrote the {size:,}-row pair in {time.perf_counter() - start:.0f} s: {counts}")
    with open(counts_file, encoding="utf-8") as f:
        return folder, json.load(f)


def fit(points):
    """Least-squares slope of log(y) on log(x); None below two points."""
    points = [(math.log(x), math.log(y)) for x, y in points if y]
    if len(points) < 2:
        return None
    mx, my = (sum(p[i] for p in points) / len(points) for i in (0, 1))
    denominator = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / denominator if denominator else None


def exponents(rows, fit_from):
    rows = [per_score(r) for r in rows]
    out = {}
    for name in dict.fromkeys(r["command"] for r in rows):
        done = [r for r in rows if r["command"] == name and r["run"] == 1 and r["status"] == "ok" and r["rows"] >= fit_from]
        out[name] = {cost: fit([(r["rows"], r[key]) for r in done]) for cost, key in COSTS.items()}
    return out


def _cell(value, fmt="{:.1f}"):
    return "-" if value is None else fmt.format(value)


def report(saved):
    rows, run = [per_score(r) for r in saved["rows"]], saved["run"]
    lines = [[r["command"], f"{r['rows']:,}", r["target_users"], r["target_items"], r["run"],
              r["status"], _cell(r["wall_s"]), _cell(r["setup_s"]), _cell(r["train_s_per_epoch"], "{:.2f}"),
              _cell(r["eval_s_per_pass"], "{:.2f}"), _cell(r["eval_ns_per_score"], "{:.2f}"), _cell(r["test_s"]),
              _cell(r["peak_rss_gb"], "{:.2f}"), _cell(r["protocol_mb"]), _cell(r["silent_s"])] for r in rows]
    table = markdown(["command", "rows", "users", "items", "run", "status", "wall s", "set-up s", "train s / epoch",
                      "eval s / pass", "eval ns / score", "test s", "peak RSS GiB", "protocol MB", "longest silence s"],
                     lines)
    fitted = [[name] + [_cell(e.get(cost), "{:.2f}") for cost in COSTS] for name, e in saved["exponents"].items()]
    failed = "".join(f"\n- {r['command']} at {r['rows']:,} rows: {r['status']}; last lines: "
                     f"`{' / '.join(line[-160:] for line in r['tail'][-2:])}`" for r in rows if r["status"] != "ok")
    command = (f"Command: `OMP_NUM_THREADS=1 python benchmarks/scale.py {run.get('argv', '')}` (python {run['python']}, "
               f"torch {run['torch']}, 1 thread, {run['cores']} cores; commit {run.get('commit')})")
    if not rows:
        return (f"# Scale benchmark: the `--workers` comparison only\n\n{command}. No size was measured (`--commands` "
                "named none).\n" + parallel_report(saved.get("parallel")))
    return (f"# Cost against data size\n\n{command}"
            f"\n\nEach command: `run_recbole_transfer.py` with its arguments (below), `--epochs {run['epochs']}`, "
            f"`--train_batch_size {run['batch']}`, a fresh protocol folder (run 2: the folder run 1 wrote), on the "
            "synthetic pair of that size (`write_scale_pair`: target users, items as listed; a source sharing 90 % of "
            "the users). Set-up: start to the first training epoch; test: the last epoch to exit; longest silence: the "
            "longest time with no printed line.\n\n" + table + "\n\n"
            + f"## Growth exponents (slope of log cost on log rows, {saved['fit_from']:,} rows and up, run 1)\n\n"
            + "Eval ns / score: the pass's time per user-item score (full ranking scores every user against every "
              "item: users x items, which grows as rows^2 on this generator; uni99: users x 100). Its exponent near "
              "0 says the pass costs what its scores cost.\n\n"
            + markdown(["command", "train s / epoch", "eval s / pass", "wall s", "peak RSS", "eval ns / score"], fitted)
            + "\n\n"
            + "## Commands\n\n" + "\n".join(f"- {name}: `{' '.join(args)}`" for name, args in COMMANDS.items()
                                           if any(r['command'] == name for r in rows))
            + ("\n\n## Failed or stopped\n" + failed if failed else "") + "\n" + parallel_report(saved.get("parallel")))


def parallel_report(parallel):
    if not parallel:
        return ""
    one, many = parallel["sequential"], parallel["parallel"]
    line = [f"`{parallel['command']} --seeds=[{parallel['seed']}]`", parallel["workers"], one["status"], _cell(one["wall_s"]),
            many["status"], _cell(many["wall_s"]), _cell(parallel["speedup"], "{:.2f}x"), one["runs"],
            "yes" if parallel["identical_rows"] else "**no**"]
    return ("\n## `--scenario --workers`\n\nThe overlap family's default scenario on the bundled ml-100k pair, one data "
            "seed: one unit after another, then its units (seed, arm, setting) as Ray tasks on a local Ray of `--workers` CPUs; "
            "each run in a fresh folder (its own domains and protocol draw). Identical rows: every row equal but for "
            "wall times and checkpoint paths.\n\n"
            + markdown(["command", "workers", "sequential", "sequential s", "parallel", "parallel s", "speed-up",
                        "runs", "identical rows"], [line]) + "\n"
            + "".join(f"\n- the {label} run: {run['status']}; last lines: `{' / '.join(t[-160:] for t in run['tail'][-2:])}`\n"
                      for label, run in (("sequential", one), ("parallel", many)) if run["status"] != "ok"))


def plot(saved, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    for ax, key, title in zip(axes, ("train_s_per_epoch", "eval_s_per_pass", "wall_s"),
                              ("train s per epoch", "eval s per pass", "wall s")):
        for name in dict.fromkeys(r["command"] for r in saved["rows"]):
            points = sorted((r["rows"], r[key]) for r in saved["rows"]
                            if r["command"] == name and r["run"] == 1 and r["status"] == "ok" and r[key])
            if points:
                ax.plot(*zip(*points), marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("interactions per domain")
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = common.parser("scale", __doc__)
    p.add_argument("--sizes", nargs="+", type=int, default=list(SIZES), help="interactions per domain")
    p.add_argument("--commands", nargs="*", default=list(COMMANDS), choices=list(COMMANDS),
                   help="default: all; none (a bare --commands) measures only the --workers comparison")
    p.add_argument("--epochs", type=int, default=1, help="epochs of every command (default 1)")
    p.add_argument("--train_batch_size", type=int, default=2048, help="RecBole's default: 2048")
    p.add_argument("--timeout", type=float, default=3600.0, help="seconds a command may run (default 3600)")
    p.add_argument("--cached", nargs="*", default=[], choices=list(COMMANDS),
                   help="commands that also run a second time on the protocol folder of the first")
    p.add_argument("--fit_from", type=int, default=400_000, help="the smallest size in the fitted exponents")
    p.add_argument("--workers", type=int, default=2, help="the --scenario --workers comparison's workers (default 2; "
                                                          "0: no comparison)")
    p.add_argument("--parallel_seed", type=int, default=2020, help="the comparison's data seed (default 2020)")
    p.add_argument("--data_root", default=None, help="where the pairs are written (default: a folder under the "
                                                     "system's temporary folder, kept for reruns)")
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    if min(args.sizes) < 500 or args.epochs < 1 or args.timeout <= 0 or args.workers < 0:
        p.error("--sizes must be >= 500 rows, --epochs >= 1, --timeout > 0 and --workers >= 0")
    data_root = args.data_root or os.path.join(tempfile.gettempdir(), "recbole_transfer_scale")
    parts = args.out + ".parts"
    os.makedirs(parts, exist_ok=True)
    rows = []
    for size in sorted(args.sizes) if args.commands else ():
        folder, counts = pair_at(data_root, size, print)
        for name in args.commands:
            work = tempfile.mkdtemp(prefix="scale_run_")
            for run in (1, 2) if name in args.cached else (1,):
                label = f"{name.replace(' ', '_').replace(',', '')}.{size}.{run}"

                def compute(name=name, run=run):
                    print(f"{name} at {size:,} rows (run {run}) ...", flush=True)
                    row = measure(name, size, folder, args.epochs, args.train_batch_size, args.timeout, work)
                    print(f"  {row['status']}: wall {row['wall_s']:.1f} s, train {_cell(row['train_s_per_epoch'], '{:.2f}')}"
                          f" s/epoch, eval {_cell(row['eval_s_per_pass'], '{:.2f}')} s/pass, peak "
                          f"{row['peak_rss_gb']:.2f} GB, longest silence {row['silent_s']:.0f} s", flush=True)
                    return {**row, "run": run, "target_users": counts["stgt"]["users"],
                            "target_items": counts["stgt"]["items"]}

                rows.append(common.part(os.path.join(parts, label + ".json"), compute))
            shutil.rmtree(work, ignore_errors=True)
    parallel = None
    if args.workers:
        parallel = common.part(os.path.join(parts, f"parallel.{args.workers}.{args.parallel_seed}.json"),
                               lambda: measure_parallel(args.workers, args.parallel_seed, args.timeout, print))
    saved = {"run": common.record(args.threads, argv=" ".join(argv), epochs=args.epochs, batch=args.train_batch_size),
             "rows": rows, "fit_from": args.fit_from, "exponents": exponents(rows, args.fit_from), "parallel": parallel}
    common.write(args.out, report(saved), saved)
    if rows:
        plot(saved, args.out + ".png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
