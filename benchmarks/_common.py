"""What every benchmark script shares: its command line, the record of its run, its results files, reused parts.

A benchmark measures and keeps what it measured in ``saved``, a dict: ``rows`` (the measurements), ``run`` (where
and how it ran: :func:`record`) and whatever else its tables need. Its ``report(saved)`` turns ``saved`` into the
Markdown. The measuring command writes ``<out>.json`` (``saved``) and ``<out>.md`` (``report(saved)``) with
:func:`write`; ``--tables_from <out>.json`` prints ``report`` of that JSON (:func:`show`): the same text, rebuilt from
the JSON alone, and writes nothing.

- :func:`parser` and :func:`parse`: ``--threads``, ``--out`` (a path without extension; a trailing ``.md`` is
  dropped), ``--tables_from`` and, for a script with seeds, ``--seeds`` (``--seeds 2020 2021`` or ``--seeds
  "2020 2021"``);
- :func:`record`: machine, processor, cores, torch and python versions, torch threads, and the script's own
  values (its arguments, wall times);
- :func:`part`: a finished part of a long run (a seed, a setting) kept in its own JSON file and read back by a
  rerun, so that only unfinished parts are measured again.

A results JSON written before the JSON kept a run record (a list of rows, or a dict without ``run``) is read with
:data:`LEGACY` as its record: every such file was measured on the machine the README names (2-core x86_64, torch
2.13.0 CPU, Python 3.11.7, one torch thread). Values it never kept (a wall time, a profile) print as ``?``.
"""

import argparse
import json
import os
import platform
import sys

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
MISSING = "?"
LEGACY = {"machine": "x86_64", "processor": "x86_64", "cores": 2, "torch": "2.13.0+cpu", "python": "3.11.7",
          "threads": 1, "legacy": True}


def parser(name, doc, seeds=None):
    """The shared flags; ``seeds`` (the default seeds) adds ``--seeds``. Results go to ``results/<name>``."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1; run with OMP_NUM_THREADS=1)")
    p.add_argument("--out", default=os.path.join(RESULTS, name), help="writes <out>.md and <out>.json")
    p.add_argument("--tables_from", metavar="JSON", help="print the Markdown of a saved <out>.json: no training, "
                                                           "nothing written")
    if seeds is not None:
        p.add_argument("--seeds", nargs="+", default=[str(s) for s in seeds], help=f"default: {' '.join(map(str, seeds))}")
    return p


def parse(p, argv=None):
    args = p.parse_args(argv)
    args.out = args.out[:-3] if args.out.endswith(".md") else args.out
    if hasattr(args, "seeds"):
        args.seeds = [int(s) for value in args.seeds for s in value.replace(",", " ").split()]
    return args


def measuring(threads):
    """Before a measuring run: warnings only (its tables and progress lines are printed) and ``threads`` torch threads."""
    import torch

    from recbole_transfer.logs import quiet_logging

    quiet_logging()
    torch.set_num_threads(threads)


def record(threads, **values):
    """The run record: where and how a benchmark ran (and with which code: the package's version, the protocol's
    version and code hash, the git commit when there is one), plus ``values``."""
    import subprocess

    import torch

    import recbole_transfer
    from recbole_transfer.data.protocol import DRAW_KEY

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=os.path.dirname(RESULTS), capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except OSError:
        commit = None
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version(),
            "threads": threads, "recbole_transfer": recbole_transfer.__version__, "commit": commit,
            "protocol": f"{DRAW_KEY['version']}/{DRAW_KEY['code'][:12]}", **values}


def load(path):
    """A results JSON as ``saved`` (``rows``, ``run``, ...); an older file without a run record gets :data:`LEGACY`."""
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    saved = {"rows": saved} if isinstance(saved, list) else saved
    saved.setdefault("run", dict(LEGACY))
    return saved


def show(report, path):
    """``--tables_from``: print ``report`` of the JSON at ``path`` (exactly what the measuring run wrote to its .md)."""
    sys.stdout.write(report(load(path)))
    return 0


def _numpy(value):
    """A numpy array or scalar as JSON writes plain lists and numbers (``json.dump``'s ``default``)."""
    import numpy as np

    if isinstance(value, (np.ndarray, np.generic)):
        return value.tolist()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


UNREAD = ("valid_per_user", "valid_users")  # per-user validation values: kept in checkpoints, read by no table


def without(rows, keys=UNREAD):
    """``rows`` less the keys no table of the results file reads (they would only grow it)."""
    return [{k: v for k, v in r.items() if k not in keys} for r in rows]


def write(out, text, saved):
    """Print ``text`` and write it to ``<out>.md``, ``saved`` to ``<out>.json``."""
    print("\n" + text, end="")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".json", "w", encoding="utf-8") as f:
        json.dump(saved, f, default=_numpy)
    with open(out + ".md", "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {out}.md and {out}.json", file=sys.stderr)


def part(path, compute, progress=print, reuse=lambda kept: True):
    """What ``path`` keeps (a finished part of an earlier run) when ``reuse(kept)``, else ``compute()``, kept there."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            kept = json.load(f)
        if reuse(kept):
            progress(f"read {path}")
            return kept
    value = compute()
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, default=str)
    return value


def number(value, fmt="{:.0f}"):
    """``fmt`` of a recorded value, :data:`MISSING` when the results file did not keep it."""
    return MISSING if value is None else fmt.format(value)


def machine(run):
    """'x86_64, 2 cores, torch 2.13.0+cpu'."""
    return f"{run['machine']}, {run['cores']} cores, torch {run['torch']}"
