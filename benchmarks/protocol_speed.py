"""Benchmark: the evaluation protocol's cache, off and on, on the default scenario's arms.

The default ml-100k scenario (source drama, 5 sparse targets, no transfer + config-1..7), one seed. Every
(target, arm) runs twice, the two modes interleaved (off/on, then on/off for the next arm) to cancel drift:

- ``protocol_cache: False``: the split is recomputed for the run and every validation redraws its 99
  negatives per user through RecBole's sampler (under the protocol's fixed generator: the same
  candidates), which is what each epoch cost before the protocol existed;
- ``protocol_cache: True``: the protocol is read from disk (the first arm of a target writes it) and the
  collated evaluation batches are replayed from memory.

Both modes must give identical metrics (checked per arm, printed). Reported per target and in all: wall
time per arm (data preparation, training, validation, test), time in training passes and in validation,
and the epoch-time ratio (training + validation) / training.

    OMP_NUM_THREADS=1 python benchmarks/protocol_speed.py
    python benchmarks/protocol_speed.py --tables_from benchmarks/results/protocol_speed.json
"""

import hashlib
import json
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from recbole_transfer.methods.layer_transfer.strategy import ARMS
from recbole_transfer.pipeline.two_stage import pretrain_source, run_transfer
from recbole_transfer.registry import get_method
from recbole_transfer.report import markdown

import _common as common

DEFAULT_SCENARIO = get_method("layer_transfer").scenario
TARGETS = ["action", "comedy", "dark", "family", "other"]


def one_arm(target, arm, cache, keys, pretrained):
    start = time.perf_counter()
    result = run_transfer("TransferMLP", None, target, [DEFAULT_SCENARIO], {**keys, "transfer": arm, "protocol_cache": cache},
                          pretrained=pretrained, saved=True, verbose=False)
    wall = time.perf_counter() - start
    seconds = result["epoch_seconds"]
    return {"target": target, "arm": arm, "cache": cache, "wall_s": wall, "fit_s": result["fit_seconds"],
            "train_s": float(sum(seconds["train"])), "valid_s": float(sum(seconds["valid"])),
            "epochs": result["epochs_run"], "test": dict(result["test_result"]), "valid": dict(result["best_valid_result"]),
            "test_per_user": hashlib.sha1(json.dumps(result["test_per_user"], sort_keys=True).encode()).hexdigest()}


def table(rows):
    header = ["target", "arms", "wall s per arm, cache off", "wall s per arm, cache on", "speed-up", "valid s per epoch, off",
              "valid s per epoch, on", "train s per epoch", "epoch time / training pass, cache on", "metrics identical"]
    lines = []
    groups = {t: [r for r in rows if r["target"] == t] for t in dict.fromkeys(r["target"] for r in rows)}
    groups["**all**"] = rows
    for target, group in groups.items():
        off = [r for r in group if not r["cache"]]
        on = [r for r in group if r["cache"]]
        epochs_off, epochs_on = sum(r["epochs"] for r in off), sum(r["epochs"] for r in on)
        train_on = sum(r["train_s"] for r in on)
        identical = all(a["test"] == b["test"] and a["valid"] == b["valid"] and a.get("test_per_user") == b.get("test_per_user")
                        for a, b in zip(off, on))  # per-user values: a digest (an older results file kept none)
        lines.append([
            target, len(on), f"{np.mean([r['wall_s'] for r in off]):.2f}", f"{np.mean([r['wall_s'] for r in on]):.2f}",
            f"{sum(r['wall_s'] for r in off) / sum(r['wall_s'] for r in on):.2f}x",
            f"{sum(r['valid_s'] for r in off) / epochs_off:.4f}", f"{sum(r['valid_s'] for r in on) / epochs_on:.4f}",
            f"{train_on / epochs_on:.4f}", f"{(train_on + sum(r['valid_s'] for r in on)) / train_on:.2f}",
            "yes" if identical else "NO",
        ])
    return markdown(header, lines)


def profile_validation(target, keys, repeats=20):
    """Where a cached validation epoch goes: cProfile of ``repeats`` validations of a fresh model on ``target``."""
    import cProfile
    import pstats

    from recbole_transfer.methods.layer_transfer.model import TransferMLP
    from recbole_transfer.pipeline.two_stage import build_model, prepare_domain
    from recbole_transfer.request import domain_config
    from recbole_transfer.trainer import TransferTrainer

    data = prepare_domain(domain_config("TransferMLP", target, [DEFAULT_SCENARIO], keys))
    trainer = TransferTrainer(data.config, build_model(data), stage="analysis")
    trainer.evaluate(data.valid_data, load_best_model=False)
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(repeats):
        trainer.evaluate(data.valid_data, load_best_model=False)
    profile.disable()
    stats = pstats.Stats(profile).stats
    total = sum(tt for (_, _, _), (_, _, tt, _, _) in stats.items())
    model_file = TransferMLP.forward.__code__.co_filename  # methods/layer_transfer/model.py
    forward = max(ct for (file, _, func), (_, _, _, ct, _) in stats.items() if func == "forward" and file == model_file)
    linear = sum(tt for (_, _, func), (_, _, tt, _, _) in stats.items() if func == "<built-in method torch._C._nn.linear>")
    rows = data.valid_data._dataset.inter_num * 100
    return (f"Profile (cProfile, {repeats} cached validations of a fresh TransferMLP on {target}: {rows:,} candidate rows "
            f"each): {100 * forward / total:.0f} % of the time in TransferMLP.forward, {100 * linear / total:.0f} % in its "
            f"linear layers; {1000 * total / repeats:.1f} ms per validation under the profiler.")


def report(saved):
    """The results file's Markdown, from the saved rows and run record alone."""
    rows, run = saved["rows"], saved["run"]
    return (
        "# Protocol cache: time per arm, off vs on (default scenario)\n\n"
        f"command: `OMP_NUM_THREADS={run['threads']} python benchmarks/protocol_speed.py`  \n"
        f"machine: {common.machine(run)}, {run['threads']} torch thread(s); seed {run.get('seed', common.MISSING)}; every arm "
        "run with the cache off and on, interleaved; wall s = data preparation, training, validation and test of the arm "
        "(the source is trained once, before)\n\n" + table(rows) + "\n\n"
        "Goals: >= 2x faster per arm with the cache; epoch time (training + validation) <= 1.3 x the training pass.\n\n"
        + run.get("profile", common.MISSING) + "\n"
    )


def main(argv=None):
    p = common.parser("protocol_speed", __doc__)
    p.add_argument("--seed", type=int, default=2020)
    p.add_argument("--targets", nargs="+", default=TARGETS)
    p.add_argument("--arms", nargs="+", default=list(ARMS))
    args = common.parse(p, argv)
    if args.tables_from:
        return common.show(report, args.tables_from)
    common.measuring(args.threads)
    work = tempfile.mkdtemp(prefix="protocol_speed-")
    keys = {"seed": args.seed, "num_threads": args.threads, "protocol_dir": os.path.join(work, "protocols"),
            "checkpoint_dir": os.path.join(work, "saved"), "domain_cache_dir": os.path.join(work, "domains")}
    pretrained = pretrain_source("TransferMLP", "drama", [DEFAULT_SCENARIO], keys, verbose=False)
    rows, flip = [], False
    for target in args.targets:
        for arm in args.arms:
            for cache in ((True, False) if flip else (False, True)):
                rows.append(one_arm(target, arm, cache, keys, pretrained))
            flip = not flip
            on, off = rows[-1] if rows[-1]["cache"] else rows[-2], rows[-2] if rows[-1]["cache"] else rows[-1]
            print(f"{target:<7} {arm:<9} off {off['wall_s']:.2f}s  on {on['wall_s']:.2f}s  "
                  f"test {on['test']} {'==' if on['test'] == off['test'] else '!='} {off['test']}", flush=True)
    profiled = profile_validation(args.targets[0], keys)
    shutil.rmtree(work, ignore_errors=True)
    saved = {"run": common.record(args.threads, seed=args.seed, profile=profiled), "rows": rows}
    common.write(args.out, report(saved), saved)
    return 0


if __name__ == "__main__":
    sys.exit(main())
