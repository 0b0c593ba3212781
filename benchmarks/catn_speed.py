"""Benchmark: CATN's training time per epoch on the planted_strong pair (data seed 2020, eta 1, cold-start), for the
paper's recipe (two flows, LeakyReLU G, no target-only users) and the defaults (in-domain flows, softplus G, the
benchmark's 150 target-only users), with the CATN benchmark's keys (batches of 64, M 3, k 16, 100-word documents).

Each measurement runs in its own process, on the package of one checkout: this one, and each ``--baseline_code DIR``
(another checkout of the repository, e.g. ``git worktree add /tmp/old <commit>``), so that the same machine times
two versions of the model the same way; the data, keys and this timing loop are this checkout's for all of them
(the CATN benchmark's PLANTED and KEYS). Each (code, recipe) is measured once, one after the other. Per (code, recipe): the pair is built, then 3 training epochs run (Adam, no
validation); the median epoch's seconds is kept.

    OMP_NUM_THREADS=1 python benchmarks/catn_speed.py --baseline_code /tmp/old
    python benchmarks/catn_speed.py --tables_from benchmarks/results/catn_speed.json
"""

import json
import os
import subprocess
import sys
import tempfile

import _common as common
from recbole_transfer.report import markdown

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RECIPES = {"paper": {"in_domain_weight": 0.0, "correlation": "leaky_relu", "target_only_users": 0},
           "defaults": {"in_domain_weight": 1.0, "correlation": "softplus", "target_only_users": 150}}
EPOCHS = 3


def measure(recipe):
    """One recipe on the code this process imports: {steps, epoch seconds (median of EPOCHS), every epoch's}."""
    import statistics
    import time

    import torch

    import catn as bench
    from recbole_transfer import registry
    from recbole_transfer.data.synthetic import write_planted_aspects
    from recbole_transfer.methods.overlap_cdr.pair import build_pair
    from recbole_transfer.methods.overlap_cdr.runner import build, pair_configs, pair_request
    from recbole_transfer.methods.overlap_cdr.stages import forever
    from recbole_transfer.request import Request

    torch.set_num_threads(1)
    spec = RECIPES[recipe]
    data = tempfile.mkdtemp()
    write_planted_aspects(data, seed=2020, **{**bench.PLANTED["planted_strong"],
                                              "target_only_users": spec["target_only_users"]})
    keys = {k: v for k, v in bench.KEYS["planted_strong"].items() if k != "model_keys"}
    keys.update(bench.KEYS["planted_strong"]["model_keys"]["CATN"])
    keys.update(num_threads=1, data_path=data, protocol_dir=os.path.join(data, "p"), protocol="cold_start", eta=1.0,
                seed=2020, show_progress=False, checkpoint_dir=os.path.join(data, "saved"),
                in_domain_weight=spec["in_domain_weight"], correlation=spec["correlation"])
    method = registry.get_method("overlap_cdr")
    scenario = method.runner.scenario_files(method, "CATN")[0]
    source_config, config = pair_configs(pair_request(Request("CATN", "asrc", ["atgt"], [scenario], keys)))
    pair = build_pair(source_config, config)
    pair.reset(2020, config["train_batch_size"])
    model = build("CATN", config, pair)
    model.feeds["source"] = forever(pair.source.train_data)
    optimizer = torch.optim.Adam(model.parameters(), lr=float(config["learning_rate"]))
    batches = list(pair.target.train_data)
    model.train()
    times = []
    for _ in range(EPOCHS):
        start = time.perf_counter()
        for batch in batches:
            optimizer.zero_grad()
            model.calculate_loss(batch).backward()
            optimizer.step()
        times.append(time.perf_counter() - start)
    import recbole_transfer

    return {"steps": len(batches), "epoch_s": statistics.median(times), "epochs_s": times,
            "package": os.path.dirname(os.path.dirname(os.path.abspath(recbole_transfer.__file__)))}


def run_child(code, recipe):
    """``measure(recipe)`` in a fresh process importing the package of checkout ``code``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([code, os.path.join(code, "benchmarks")]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", recipe], cwd=code, env=env,
                          capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise SystemExit(f"catn_speed: the measurement of {recipe!r} on {code} failed:\n{done.stderr[-2000:]}")
    result = json.loads(lines[-1][len("RESULT "):])
    if os.path.realpath(result.pop("package")) != os.path.realpath(code):
        raise SystemExit(f"catn_speed: the measurement of {code} imported another checkout's package")
    return result


def commit_of(code):
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=code, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "?"
    except OSError:
        return "?"


def report(saved):
    rows, run = saved["rows"], saved["run"]
    lines = [[r["code"], r["recipe"], r["steps"], f"{r['epoch_s']:.3f}", f"{1000 * r['epoch_s'] / r['steps']:.0f}"]
             for r in rows]
    return (f"# CATN: training time per epoch\n\nCommand: `OMP_NUM_THREADS=1 python benchmarks/catn_speed.py "
            f"{run.get('argv', '')}` (python {run['python']}, torch {run['torch']}, 1 thread, {run['cores']} cores)\n\n"
            "planted_strong, data seed 2020, eta 1, the CATN benchmark's keys; median of 3 training epochs (no "
            "validation), each (code, recipe) in its own process. `paper`: two flows, LeakyReLU G, no target-only "
            "users; `defaults`: the in-domain flows, softplus G and 150 target-only users (twice the target rows)\n\n"
            + markdown(["code (commit)", "recipe", "steps per epoch", "s per epoch", "ms per step"], lines) + "\n")


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        print("RESULT " + json.dumps(measure(argv[1])), flush=True)
        return 0
    p = common.parser("catn_speed", __doc__)
    p.add_argument("--baseline_code", nargs="*", default=[], help="other checkouts of the repository to time the same way")
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    missing = [c for c in args.baseline_code if not os.path.isdir(os.path.join(c, "recbole_transfer"))]
    if missing:
        p.error(f"--baseline_code {' '.join(missing)}: not a checkout of this repository (no recbole_transfer/ inside)")
    rows = []
    for code in [HERE] + [os.path.abspath(c) for c in args.baseline_code]:
        for recipe in RECIPES:
            result = run_child(code, recipe)
            rows.append({"code": commit_of(code) + (" (this checkout)" if code == HERE else ""), "recipe": recipe,
                         **result})
            print(f"{rows[-1]['code']} {recipe}: {result['epoch_s']:.3f} s per epoch ({result['steps']} steps)", flush=True)
    saved = {"run": common.record(1, argv=" ".join(argv)), "rows": rows}
    common.write(args.out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
