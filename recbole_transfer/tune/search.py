"""Ray Tune: one driver for every method's search (every registered method, built in or not).

``run_search`` does, per search:

1. the method's runner prepares the search once (the two-stage runner pretrains the source with the global
   seed and saves it under the run directory; every trial of every target loads that checkpoint);
2. per target, the runner checks every distinct trial configuration before any trial starts (layer names,
   shapes, id spaces; a bad space fails in seconds) and returns the data every trial must be scored on;
3. one Ray Tune search per target: trials are concrete configurations from :class:`SearchSpace` (a grid Ray
   enumerates), each trains with a training seed derived from the global seed and its own configuration, on
   the data of the global ``data_seed`` (every trial: the same split and candidates, built once by the driver
   and cached under the run directory), reports its validation metrics and its data fingerprint once per
   ``time_attr`` unit of its runner (epoch; period) and never evaluates the test split; ASHA (default) stops
   trials whose validation metric lags, except the method's baseline arm;
4. pick the trial with the best validation metric (a transfer trial must beat the best baseline trial by more
   than ``scratch_margin``, default one paired standard error of their per-user validation differences); the
   runner tests it once (the two-stage runner: from the checkpoint of its best epoch); write the trial table,
   ``best.yaml`` (reproduces the winner outside Ray with ``run_recbole_transfer.py``) and ``result.json`` per
   target (``same_split``: every trial's data fingerprint was the driver's), and a summary table.

Everything is written under the run directory (``tune_dir``/<timestamp>, or ``--run_dir``): Ray's
experiment folders and trial folders (RecBole's logs, checkpoints), derived domains, the source
checkpoint, tables. Ray's own session files go to Ray's temp dir (``/tmp/ray``), as for any Ray program.
Each target's searches are resumable: an interrupted search continues with ``resume=<run dir>``;
finished and errored trials are kept, unfinished ones restart.

Assumes a shared filesystem with the Ray nodes (true for a local Ray or a single-machine cluster):
trials read the source checkpoint and the driver reads the winner's checkpoint by path.
"""

import contextlib
import json
import logging
import os
import socket
import sys
import time

import numpy as np
import yaml

from .. import registry
from ..config import TransferConfig
from ..data import data_seed_of
from ..errors import TransferConfigError, TransferError, did_you_mean
from ..logs import trial_logging
from ..pipeline.base import Request
from ..pipeline.scenario import check_strategies, scenario_targets
from ..pipeline.two_stage import check_domains
from ..report import markdown
from ..stats import paired_se
from ..trainer import load_checkpoint
from ..transfer import NO_TRANSFER
from ..utils import stable_hash
from .space import BRANCH_KEY, SearchSpace

logger = logging.getLogger(__name__)

STATE_FILE = "search.json"
TRIAL_KEY = "trial"  # Ray's config of a trial: {"trial": {config keys..., "branch": name}}
QUIET_WARNINGS = "ignore::FutureWarning,ignore:pkg_resources is deprecated"


class SearchInterrupted(TransferError):
    """The search stopped before all trials ended (Ctrl-C, lost cluster); it can be resumed."""


def trial_seed(seed, params, method=None):
    """The seed of a trial: a stable function of the global seed and the trial's configuration (the global seed
    itself for a runner whose trials share it, ``seed_per_trial = False``)."""
    if method is not None and not method.runner.seed_per_trial:
        return int(seed)
    params = {k: v for k, v in params.items() if k != BRANCH_KEY}
    return int(stable_hash({"seed": seed, "trial": params}), 16) % (2**31 - 1)


def params_of(trial):
    """The config keys of a trial (its branch name dropped)."""
    return {k: v for k, v in trial.items() if k != BRANCH_KEY}


def describe(method, trial):
    """Short text of a trial configuration, e.g. ``<arm> <variant> lr=0.0021``."""
    return method.describe(params_of(trial))


def _metric_key(metric, bigger=True):
    """The reported key Tune selects on: ``valid_<metric>``, or ``valid_neg_<metric>`` (the value negated, added to
    every report by the trial) for a metric where smaller is better (e.g. RMSE): the search always maximises."""
    return "valid_" + ("" if bigger else "neg_") + str(metric).lower()


# ----- the trial (runs in a Ray worker, cwd = its trial directory) --------------------------------------
def _trial(config, setup):
    """A Ray Tune trainable: the method's runner runs one trial; RecBole's per-epoch logs go to its recbole.log.
    Logging is configured here because a Ray worker is an entry point of its own."""
    from ray.air import session

    trial_logging()
    method = registry.load(setup["method"], setup["method_module"])
    params = params_of(config[TRIAL_KEY])
    trial_setup = {**setup, "config_dict": {**setup["config_dict"], **params, "seed": trial_seed(setup["seed"], params, method)}}
    negated = setup.get("negated")  # [reported key, key of its negation] for a smaller-is-better metric

    def report(metrics):
        if negated and negated[0] in metrics:
            metrics = {**metrics, negated[1]: -float(metrics[negated[0]])}
        session.report(metrics)

    method.runner.trial(method, trial_setup, params, report)


ENDS_FILE = "trial_ends.jsonl"


def _ends(path):
    """{trial_id: {outcome, config}} of the trials that ended (finished, stopped by the scheduler,
    errored). A line cut off by a killed process is skipped."""
    ends = {}
    if os.path.isfile(path):
        with open(path, "r", encoding="utf-8") as f:
            for line in f:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                ends[record["trial_id"]] = record
    return ends


def _progress_callback(method, target, total, metric, emit, ends_path):
    """Prints one line per ended trial and records how it ended in ``ends_path``. Ray calls neither hook
    for trials cut off by an interrupt: a trial missing from the record did not end."""
    from ray import tune

    class Progress(tune.Callback):
        def _end(self, trial, outcome):
            os.makedirs(os.path.dirname(ends_path), exist_ok=True)
            with open(ends_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"trial_id": trial.trial_id, "outcome": outcome, "config": trial.config[TRIAL_KEY]}) + "\n")
            best = trial.metric_analysis.get(metric, {}).get("max")
            epochs = (trial.last_result or {}).get(method.runner.time_attr, 0)
            score = f"best {metric} {best:.4f}" if best is not None else "no result"
            done = len(_ends(ends_path))
            shown = "ERROR (recorded, search goes on)" if outcome == "error" else outcome
            emit(f"[{target}] trial {done}/{total} {describe(method, trial.config[TRIAL_KEY]):<22} {score}  "
                 f"{method.runner.time_attr}s {epochs:>3}  {shown}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            finished = (trial.last_result or {}).get("recbole_done", False)
            self._end(trial, "finished" if finished else "stopped early (ASHA)")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial, "error")

    return Progress()


# ----- the driver ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(address=None, num_cpus=None, paths=()):
    """Join ``address`` or start a local Ray on ``num_cpus`` cores (default: all); shut down what we started.
    ``paths``: more import roots for the workers (where a method registered outside the package lives)."""
    import ray

    if ray.is_initialized():
        yield
        return
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": QUIET_WARNINGS,
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, *paths, os.environ.get("PYTHONPATH")) if p)}
    # Ray's processes started here inherit these (its pkg_resources warning, the boxed reporter of
    # Ray 2.6's new output engine that ignores verbose=0); restored on exit.
    saved = {k: os.environ.get(k) for k in ("PYTHONWARNINGS", "RAY_AIR_NEW_OUTPUT")}
    os.environ.update({"PYTHONWARNINGS": QUIET_WARNINGS, "RAY_AIR_NEW_OUTPUT": "0"})
    try:
        try:
            # "local": always a new Ray, never one found on the machine (another search, a `ray start`)
            ray.init(
                address=address or "local", num_cpus=None if address else (num_cpus or os.cpu_count()), include_dashboard=False,
                logging_level=logging.WARNING, runtime_env={"env_vars": env},
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            if address:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise TransferConfigError(f"ray_address={address!r}: cannot join a Ray cluster there ({first})") from None
            raise
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _import_roots(method):
    """The sys.path entry a worker needs to import the module that registered ``method`` (empty when it is one of
    this package's methods or an installed package that any worker imports anyway)."""
    module = sys.modules.get(method.module or "")
    path = getattr(module, "__file__", None)
    if not path:
        return ()
    root = os.path.dirname(os.path.abspath(path))
    for _ in range(method.module.count(".") + (1 if os.path.basename(path) == "__init__.py" else 0)):
        root = os.path.dirname(root)
    return (root,)


def _probe_address(address):
    """Fail in seconds, before any training, when nothing listens at a ``host:port`` Ray address
    (Ray itself retries for minutes)."""
    if not address:
        return
    if str(address).startswith("ray://"):
        raise TransferConfigError(f"ray_address={address!r}: Ray Client addresses are not supported; give the "
                                  "cluster's GCS address (host:port) from a node of the cluster")
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit():
        raise TransferConfigError(f"ray_address={address!r}: expected host:port, e.g. 127.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise TransferConfigError(f"ray_address={address!r}: no Ray cluster answers there ({exc.strerror or exc})") from None


def _check_cluster(space, emit):
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    emit(f"Ray cluster {ray.get_runtime_context().gcs_address}: {cpus:g} CPUs, "
         f"{int(cpus // space.cpus_per_trial)} trials at a time")
    if cpus < space.cpus_per_trial:
        raise TransferConfigError(f"search space cpus_per_trial={space.cpus_per_trial}: the Ray cluster has {cpus:g} CPUs")


def _absolute_config(config_dict, probe, run_dir):
    """Paths a trial needs, made absolute (Tune runs each trial in its own directory); derived domains
    are written under the run directory."""
    out = dict(config_dict)
    out["data_path"] = os.path.abspath(out.get("data_path") or probe.external_config_dict.get("data_path") or "dataset/")
    out["domain_cache_dir"] = os.path.join(run_dir, "domains")
    out["protocol_dir"] = os.path.join(run_dir, "protocols")  # built once by the driver, read by every trial
    out["data_seed"] = data_seed_of(probe)  # every trial: the same data; only its training seed differs
    if out.get("source_checkpoint") or probe["source_checkpoint"]:
        out["source_checkpoint"] = os.path.abspath(out.get("source_checkpoint") or probe["source_checkpoint"])
    return out


def _new_state(method, model, source, targets, config_files, config_dict, space_path, num_samples, run_dir):
    files = [os.path.abspath(f) for f in (config_files or [])]
    for path in files:
        if not os.path.isfile(path):
            raise TransferConfigError(f"config_files: file {path!r} does not exist")
    probe = TransferConfig(model, "ml-100k", files, config_dict or {})
    config_dict = _absolute_config(config_dict or {}, probe, run_dir)
    model = model or probe["model"]
    source = source or probe["source"]
    targets = scenario_targets(probe, targets or None)
    check_domains(probe, targets, "targets", config_dict)
    space = SearchSpace.from_file(space_path, method)
    if space.metric:
        config_dict["valid_metric"] = space.metric
    if num_samples is not None:
        space.num_samples = int(num_samples)
        if space.num_samples < 1:
            raise TransferConfigError(f"num_samples={num_samples!r}: must be >= 1")
    default_transfer = config_dict.get("transfer", probe["transfer"]) if method.strategy is not None else None
    return {
        "method": method.name, "model": model, "source": source, "targets": targets, "config_files": files,
        "config_dict": config_dict, "space_path": space.path, "space_text": space.text, "num_samples": space.num_samples,
        "default_transfer": default_transfer, "run_dir": run_dir,
        "seed": probe["seed"], "num_threads": None, "source_checkpoint": None, "created": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _load_state(run_dir):
    path = os.path.join(run_dir, STATE_FILE)
    if not os.path.isfile(path):
        raise TransferConfigError(f"resume={run_dir!r}: no {STATE_FILE} there (not a recbole_transfer search directory)")
    with open(path, "r", encoding="utf-8") as f:
        return json.load(f)


def _save_state(run_dir, state):
    with open(os.path.join(run_dir, STATE_FILE), "w", encoding="utf-8") as f:
        json.dump(state, f, indent=1, default=str)


def _space_of(state, method):
    space = SearchSpace(yaml.load(state["space_text"], Loader=yaml.FullLoader), state["space_path"], method)
    space.num_samples = state["num_samples"]
    return space


def _trial_rows(method, results, metric, space_trials, ends, max_t):
    """One row per trial: its configuration, best validation metric (as its runner scores it), time units, how
    it ended."""
    time_attr = method.runner.time_attr
    rows = []
    for result in results:
        trial_id = os.path.basename(str(result.log_dir)).replace("trial_", "")
        record = ends.get(trial_id, {})
        params = result.config[TRIAL_KEY] if result.config else record.get("config")
        frame = result.metrics_dataframe
        best, best_epoch, model_file, reports = None, None, None, 0
        if frame is not None and metric in frame and frame[metric].notna().any():
            # A trial restarted by --resume appends a second run to progress.csv: keep the last run.
            starts = frame.index[frame[time_attr] == frame[time_attr].min()]
            frame = frame.loc[starts[-1]:]
            best, best_epoch, reports = method.runner.trial_score(frame, metric, max_t)
            model_file = frame["model_file"].iloc[-1] if "model_file" in frame else None
        fingerprint = frame["fingerprint"].iloc[-1] if frame is not None and "fingerprint" in frame else None
        ended = record.get("outcome", "error")
        if result.error is not None:
            first = str(result.error).strip().splitlines()
            ended = "error: " + (first[-1] if first else type(result.error).__name__)[:160]
        rows.append({
            "index": space_trials.index(params) if params in space_trials else len(space_trials),
            "trial_id": trial_id,
            "config": params, "label": describe(method, params), "best_valid": best, "best_epoch": best_epoch,
            "epochs": reports, "ended": ended, "stopped_early": ended.startswith("stopped"),
            "model_file": model_file, "path": result.log_dir and str(result.log_dir), "fingerprint": fingerprint,
        })
    return sorted(rows, key=lambda r: r["index"])


def trial_table(rows, metric, time_attr="epoch"):
    lines = [[row["index"] + 1, row["label"], f"{row['best_valid']:.4f}" if row["best_valid"] is not None else "-",
              row["best_epoch"] or "-", row["epochs"], "yes" if row["stopped_early"] else "no", row["ended"]] for row in rows]
    return markdown(["#", "configuration", f"best {metric}", f"best {time_attr}", f"{time_attr}s run", "stopped early",
                     "ended"], lines)


def _baseline_asha(method, **kwargs):
    """Ray's ASHA, except that the method's baseline trials are never stopped early: they are what every
    transfer arm must beat, and a baseline cut at a rung would make a weak transfer arm look better."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class BaselineASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)  # records the rung result
            return TrialScheduler.CONTINUE if method.is_baseline(params_of(trial.config[TRIAL_KEY])) else decision

    return BaselineASHA(**kwargs)


def valid_per_user(row, metric):
    """(data fingerprint, per-user validation values of ``metric`` ('valid_hit@10')) at a trial's best epoch,
    read from its checkpoint."""
    checkpoint = load_checkpoint(row["model_file"])
    values = (checkpoint.get("valid_per_user") or {}).get(metric.replace("valid_", "", 1))
    if values is None:
        raise TransferError(f"trial {row['label']}: its checkpoint holds no per-user validation {metric}")
    return checkpoint.get("fingerprint"), np.asarray(values, dtype=np.float64)


def valid_differences(metric):
    """``f(a, b)``: per-user validation differences of two trials, which must have seen the same data."""

    def differences(a, b):
        (print_a, values_a), (print_b, values_b) = valid_per_user(a, metric), valid_per_user(b, metric)
        if print_a != print_b or len(values_a) != len(values_b):
            raise TransferError(
                f"trials {a['label']!r} and {b['label']!r} were validated on different data (fingerprints {print_a} vs "
                f"{print_b}); they cannot be paired"
            )
        return values_a - values_b

    return differences


def selection_margin(setting, differences):
    """How much a transfer trial's validation metric must exceed the best baseline trial's to win.
    ``se``: one paired standard error, sd(d) / sqrt(n) of the per-user validation differences d (both trials
    are scored on the same users and candidates); a number: that margin."""
    if setting == "se":
        return paired_se(differences)
    return float(setting)


def choose_winner(rows, setting="se", differences=None, is_baseline=None):
    """The winning row and why: the best validation metric (ties: the earlier trial, the baseline first),
    unless it is a transfer trial that beats the best baseline trial by no more than the margin.
    ``differences(best, baseline)``: their per-user validation differences (needed by ``se``);
    ``is_baseline(config)``: the method's baseline test (default: the default method's)."""
    is_baseline = is_baseline or registry.default_method().is_baseline
    scored = [r for r in rows if r["best_valid"] is not None and not r["ended"].startswith("error")]
    if not scored:
        return None, "no trial reported a validation metric"
    best = max(scored, key=lambda r: (r["best_valid"], -r["index"]))
    scratch = [r for r in scored if is_baseline(params_of(r["config"]))]
    if is_baseline(params_of(best["config"])) or not scratch:
        return best, "best validation metric"
    base = max(scratch, key=lambda r: (r["best_valid"], -r["index"]))
    margin = selection_margin(setting, differences(best, base) if setting == "se" else None)
    lead = best["best_valid"] - base["best_valid"]
    name = "no transfer" if base["label"] == NO_TRANSFER else base["label"]
    if lead <= margin:
        return base, f"{best['label']} led {name} by {lead:.4f} <= margin {margin:.4f}: {name} kept"
    return best, f"leads {name} by {lead:.4f} > margin {margin:.4f}"


def _write_best_yaml(method, path, state, target, row, metric, valid, test, extra_keys):
    params = params_of(row["config"])
    keys = {**state["config_dict"], **params, "seed": trial_seed(state["seed"], params, method), **extra_keys}
    keys["num_threads"] = state["num_threads"]
    files = " ".join(state["config_files"] + [path])
    source = f"--source={state['source']} " if state["source"] else ""
    command = (f"python run_recbole_transfer.py --model={state['model']} {source}"
               f"--target={target} --config_files=\"{files}\"")
    shown = ", ".join(f"{k} {v:.4f}" for k, v in test.items()) or "see the comparison below"
    header = [
        f"# Best configuration for target {target!r}, chosen by Ray Tune on {metric} ({row['label']}).",
        f"# Search: {os.path.dirname(os.path.dirname(path))}; validation {metric} {valid:.4f}; test {shown}.",
        "# Reproduce outside Ray (same seed, same metrics):",
        f"#   {command}",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(header) + "\n" + yaml.safe_dump(keys, sort_keys=True))
    return command


def _check_run_keys(config, margin="se"):
    """The Tune metric of a target config; clear errors for what Tune cannot use."""
    metric = str(config["valid_metric"]).lower()
    if margin == "se" and "@" not in metric:
        raise TransferConfigError(
            f"valid_metric={config['valid_metric']!r} with scratch_margin: se: the paired margin needs a per-user "
            "top-k metric (e.g. Hit@10, NDCG@10); give scratch_margin a number for this metric"
        )
    computed = {f"{m.lower()}@{k}" for m in config["metrics"] for k in config["topk"]} | {m.lower() for m in config["metrics"]}
    if metric not in computed:
        raise TransferConfigError(
            f"valid_metric={config['valid_metric']!r} (search space metric): not computed by metrics={config['metrics']} "
            f"topk={config['topk']}{did_you_mean(metric, computed)}"
        )
    if not isinstance(config["eval_step"], int) or config["eval_step"] < 1:
        raise TransferConfigError(f"eval_step={config['eval_step']!r}: the search needs a validation every 1..N epochs")
    return _metric_key(metric, bool(config["valid_metric_bigger"]))


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _search_target(method, state, run_dir, target, space, trials, emit, resume):
    from ray import air, tune
    from ray.tune.schedulers import FIFOScheduler

    name = _safe(target)
    path = os.path.join(run_dir, name)
    if resume and os.path.isfile(os.path.join(path, "result.json")):  # this target's search had finished
        emit(f"[{target}] search already finished: {os.path.join(path, 'result.json')}")
        with open(os.path.join(path, "result.json"), "r", encoding="utf-8") as f:
            return json.load(f)
    checked = method.runner.check_search(method, state, target, [params_of(t) for t in trials])
    metric, max_t, time_attr = _check_run_keys(checked.config, space.scratch_margin), checked.max_t, method.runner.time_attr
    if space.scheduler["type"] == "asha":
        scheduler = _baseline_asha(
            method, time_attr=time_attr, max_t=max_t, grace_period=min(space.scheduler.get("grace_period", 3), max_t),
            reduction_factor=space.scheduler.get("reduction_factor", 3),
        )
    else:
        scheduler = FIFOScheduler()
    setup = {
        "method": method.name, "method_module": method.module, "model": state["model"], "source": state["source"], "target": target,
        "config_files": state["config_files"], "config_dict": {**state["config_dict"], "num_threads": state["num_threads"]},
        "seed": state["seed"], "source_checkpoint": state["source_checkpoint"], "max_t": max_t,
        "negated": [metric.replace("valid_neg_", "valid_", 1), metric] if metric.startswith("valid_neg_") else None,
    }
    trainable = tune.with_resources(tune.with_parameters(_trial, setup=setup), {"cpu": space.cpus_per_trial})
    ends_path = os.path.join(path, ENDS_FILE)
    progress = _progress_callback(method, target, len(trials), metric, emit, ends_path)
    saved_state = os.path.isdir(path) and any(f.startswith("experiment_state") for f in os.listdir(path))
    if resume and tune.Tuner.can_restore(path) and saved_state:
        emit(f"[{target}] resuming the search in {path}: {len(_ends(ends_path))} ended trials are kept, the others run")
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False, restart_errored=False)
        tuner._local_tuner.get_run_config().callbacks = [progress]  # this process's progress lines
    else:
        emit(f"[{target}] {len(trials)} trials, metric {metric}, scheduler {space.scheduler['type']}, max {max_t} {time_attr}s")
        tuner = tune.Tuner(
            trainable,
            param_space={TRIAL_KEY: tune.grid_search(trials)},
            tune_config=tune.TuneConfig(
                metric=metric, mode="max", scheduler=scheduler, trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
                reuse_actors=False,
            ),
            run_config=air.RunConfig(
                name=name, storage_path=run_dir, verbose=0, callbacks=[progress],
                failure_config=air.FailureConfig(max_failures=0), sync_config=tune.SyncConfig(syncer=None),
            ),
        )
    results = tuner.fit()
    ends = _ends(ends_path)
    ended = len(ends)
    if ended < len(trials):
        raise SearchInterrupted(
            f"search of target {target!r} stopped with {ended}/{len(trials)} trials ended; "
            f"continue it with --resume={run_dir}"
        )
    rows = _trial_rows(method, results, metric, trials, ends, max_t)
    table = trial_table(rows, metric, time_attr)
    out = {"target": target, "metric": metric, "rows": rows, "table": table, "trials": len(rows),
           "trial_epochs": sum(r["epochs"] for r in rows), "errors": sum(r["ended"].startswith("error") for r in rows)}
    best, why = choose_winner(rows, space.scratch_margin, valid_differences(metric), method.is_baseline)
    out.update(n_valid=checked.n_valid, selection=why, fingerprint=checked.fingerprint,
               same_split=all(r["fingerprint"] == checked.fingerprint for r in rows if r["best_valid"] is not None))
    scratch = [r for r in rows if method.is_baseline(params_of(r["config"])) and r["best_valid"] is not None]
    out["scratch_valid"] = max((r["best_valid"] for r in scratch), default=None)
    if best is None:
        out.update(best=None, test_result={}, best_yaml=None, command=None)
    else:
        finished = method.runner.finish_search(method, state, target, best, metric)
        best_yaml = os.path.join(path, "best.yaml")
        command = _write_best_yaml(method, best_yaml, state, target, best, metric, best["best_valid"], finished["test_result"],
                                   finished["keys"])
        out.update(best=best, test_result=finished["test_result"], best_yaml=best_yaml, command=command)
    with open(os.path.join(path, "trials.md"), "w", encoding="utf-8") as f:
        f.write(f"Trials of target {target} ({metric}; test metrics of the winner only)\n\n{table}\n")
    with open(os.path.join(path, "result.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, default=str)
    return out


def summary_table(outcomes):
    metric = outcomes[0]["metric"] if outcomes else "valid"
    test_key = metric.replace("valid_neg_", "").replace("valid_", "")
    lines = []
    for out in outcomes:
        best = out["best"]
        scratch = f"{out['scratch_valid']:.4f}" if out["scratch_valid"] is not None else "-"
        test = out["test_result"].get(test_key)
        lines.append([out["target"], best["label"] if best else "-", f"{best['best_valid']:.4f}" if best else "-", scratch,
                      f"{test:.4f}" if best and test is not None else "-", out["trials"],
                      out["errors"], out["trial_epochs"]])
    return markdown(["target", "best configuration", f"best {metric}", f"scratch {metric}", f"test {test_key}", "trials",
                     "errors", "trial-epochs"], lines)


def run_search(
    model=None, source=None, targets=None, config_file_list=None, config_dict=None, search_space=None,
    num_samples=None, ray_address=None, run_dir=None, resume=None, num_cpus=None, progress=None,
):
    """Search the configuration of each target with Ray Tune, for the method of ``model``; returns a list of
    per-target dicts (trial rows, table, best trial, its test metrics, the best.yaml path and its reproduce
    command), and the text of the runner's ``after_search`` under ``outcomes[0]['after']``.

    ``resume=<run dir>`` continues an interrupted search (all other arguments are read from it).
    Raises TransferError on bad input, SearchInterrupted when the search did not finish.
    """
    emit = progress or (lambda msg: logger.info(msg))
    _probe_address(ray_address)
    if resume:
        run_dir = os.path.abspath(resume)
        state = _load_state(run_dir)
        method = registry.method_of(state["model"])
    else:
        probe = TransferConfig(model, "ml-100k", config_file_list, config_dict or {})
        method = registry.method_of(model or probe["model"])
        run_dir = os.path.abspath(run_dir or os.path.join(probe["tune_dir"], time.strftime("%Y%m%d-%H%M%S")))
        if os.path.isdir(run_dir) and os.listdir(run_dir):
            raise TransferConfigError(f"run_dir={run_dir!r} is not empty: give a new directory, or --resume={run_dir}")
        state = _new_state(method, model, source, targets, config_file_list, config_dict, search_space, num_samples, run_dir)
        os.makedirs(run_dir, exist_ok=True)
    space = _space_of(state, method)
    space.model = state["model"]
    state["num_threads"] = max(1, int(space.cpus_per_trial))
    _save_state(run_dir, state)
    emit(f"search {run_dir}: {state['model']} (method {method.name}), source {state['source']}, targets "
         f"{', '.join(state['targets'])}; {space.describe(state['default_transfer'])}")
    outcomes = []
    with contextlib.chdir(run_dir):  # RecBole writes log/ and log_tensorboard/ into the working directory
        trials = space.trials(state["seed"], state["default_transfer"])
        if not trials:
            raise TransferConfigError(f"search space {space.path}: no trial for model {state['model']}")
        check_strategies(method, state["model"], state["config_files"], state["config_dict"], [params_of(t) for t in trials])
        start = time.time()
        method.runner.prepare_search(method, state, [params_of(t) for t in trials], emit)
        if state["source_checkpoint"]:
            _save_state(run_dir, state)
            emit(f"search prepared in {time.time() - start:.1f}s")
        with ray_session(ray_address, num_cpus, _import_roots(method)):
            _check_cluster(space, emit)
            for target in state["targets"]:
                out = _search_target(method, state, run_dir, target, space, trials, emit, resume)
                outcomes.append(out)
                best = out["best"]
                if best:
                    emit(f"[{target}] best: {best['label']} ({out['metric']} {best['best_valid']:.4f}; {out['selection']}); "
                         f"test {out['test_result']}; reproduce: {out['command']}")
    table = summary_table(outcomes)
    with open(os.path.join(run_dir, "summary.md"), "w", encoding="utf-8") as f:
        f.write(table + "\n")
    state["finished"] = True
    _save_state(run_dir, state)
    for out in outcomes:
        out["run_dir"] = run_dir
    request = Request(state["model"], state["source"], state["targets"], state["config_files"], state["config_dict"])
    after = method.runner.after_search(method, request, outcomes, emit)
    for out in outcomes:
        out["after"] = after
    return outcomes
