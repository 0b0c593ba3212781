"""Ray Tune search over transfer configurations: one source, one or many targets.

``run_search`` does, per search:

1. pretrain the source once (RecBole trainer, global seed) and save it under the run directory; every
   trial of every target loads that checkpoint (``source_checkpoint``) instead of retraining;
2. per target, check every distinct transfer of the space against the target model and the source
   (layer names, shapes, id spaces) before any trial starts: a bad space fails in seconds;
3. run one Ray Tune search per target: trials are concrete configurations from :class:`SearchSpace`
   (a grid Ray enumerates), each trains with a training seed derived from the global seed and its own
   configuration, on the data of the global ``data_seed`` (every trial: the same split and candidates,
   the target's protocol, built once by the driver and cached under the run directory), reports its
   validation metrics and its data fingerprint once per epoch (``ray.air.session.report``) and never
   evaluates the test split; ASHA (default) stops trials whose validation metric lags, except the
   no-transfer baseline;
4. pick the trial with the best validation metric (a transfer trial must beat the best no-transfer
   trial by more than ``scratch_margin``, default one paired standard error of their per-user validation
   differences), then compute its test metrics once, from the checkpoint of its best epoch; write the trial
   table, ``best.yaml`` (reproduces the winner outside Ray with ``run_recbole_transfer.py``) and
   ``result.json`` per target (``same_split``: every trial's data fingerprint was the driver's), and a
   summary table.

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
import math
import os
import socket
import time
import warnings

import numpy as np
import yaml

from ..config import TransferConfig
from ..data import data_seed_of
from ..scenario import scenario_targets
from ..errors import TransferConfigError, TransferError, did_you_mean
from ..stats import paired_se
from ..transfer import NO_TRANSFER, make_strategy, parse_transfer, uses_patches
from ..utils import stable_hash
from .space import BRANCH_KEY, SearchSpace, default_space, is_no_transfer

logger = logging.getLogger(__name__)

STATE_FILE = "search.json"
TRIAL_KEY = "trial"
QUIET_WARNINGS = "ignore::FutureWarning,ignore:pkg_resources is deprecated"  # Ray's config of a trial: {"trial": {config keys..., "branch": name}}


class SearchInterrupted(TransferError):
    """The search stopped before all trials ended (Ctrl-C, lost cluster); it can be resumed."""


def trial_seed(seed, params):
    """The seed of a trial: a stable function of the global seed and the trial's configuration."""
    params = {k: v for k, v in params.items() if k != BRANCH_KEY}
    return int(stable_hash({"seed": seed, "trial": params}), 16) % (2**31 - 1)


def describe(params):
    """Short text of a trial configuration, e.g. ``config-3 freeze lr=0.0021``."""
    label = parse_transfer(params.get("transfer", NO_TRANSFER))[0]
    parts = [label]
    if label != NO_TRANSFER and "transfer_mode" in params:
        parts.append(str(params["transfer_mode"]))
    for key, value in params.items():
        if key in ("transfer", "transfer_mode", BRANCH_KEY):
            continue
        parts.append(f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def _metric_key(metric):
    return "valid_" + str(metric).lower()


# ----- the trial (runs in a Ray worker, cwd = its trial directory) --------------------------------------
def _trial(config, setup):
    from ray.air import session

    from ..quick_start import pretrain_source, run_transfer

    warnings.filterwarnings("ignore", category=FutureWarning)
    root = logging.getLogger()  # RecBole's per-epoch logs go to this trial's recbole.log only
    root.handlers = [logging.FileHandler(os.path.abspath("recbole.log"))]
    root.handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s  %(message)s"))
    root.setLevel(logging.INFO)
    params = {k: v for k, v in config[TRIAL_KEY].items() if k != BRANCH_KEY}
    config_dict = {**setup["config_dict"], **params, "seed": trial_seed(setup["seed"], params)}
    pretrained = None
    if not is_no_transfer(params):
        pretrained = pretrain_source(
            setup["model"], setup["source"], setup["config_files"],
            {**config_dict, "source_checkpoint": setup["source_checkpoint"]}, verbose=False,
        )

    def report(epoch, trainer, valid_result, last):
        metrics = {f"valid_{k}": float(v) for k, v in (valid_result or {}).items()}
        session.report({**metrics, "epoch": epoch, "recbole_done": bool(last), "model_file": trainer.saved_model_file,
                        "fingerprint": trainer.fingerprint})

    run_transfer(
        setup["model"], setup["source"], setup["target"], setup["config_files"], config_dict,
        pretrained=pretrained, verbose=True, log=False, on_epoch=report, evaluate_test=False,
    )


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


def _progress_callback(target, total, metric, emit, ends_path):
    """Prints one line per ended trial and records how it ended in ``ends_path``. Ray calls neither hook
    for trials cut off by an interrupt: a trial missing from the record did not end."""
    from ray import tune

    class Progress(tune.Callback):
        def _end(self, trial, outcome):
            os.makedirs(os.path.dirname(ends_path), exist_ok=True)
            with open(ends_path, "a", encoding="utf-8") as f:
                f.write(json.dumps({"trial_id": trial.trial_id, "outcome": outcome, "config": trial.config[TRIAL_KEY]}) + "\n")
            best = trial.metric_analysis.get(metric, {}).get("max")
            epochs = (trial.last_result or {}).get("epoch", 0)
            score = f"best {metric} {best:.4f}" if best is not None else "no result"
            done = len(_ends(ends_path))
            shown = "ERROR (recorded, search goes on)" if outcome == "error" else outcome
            emit(f"[{target}] trial {done}/{total} {describe(trial.config[TRIAL_KEY]):<22} {score}  epochs {epochs:>3}  {shown}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            finished = (trial.last_result or {}).get("recbole_done", False)
            self._end(trial, "finished" if finished else "stopped early (ASHA)")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial, "error")

    return Progress()


# ----- the driver ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def ray_session(address=None, num_cpus=None):
    """Join ``address`` or start a local Ray on ``num_cpus`` cores (default: all); shut down what we started."""
    import ray

    if ray.is_initialized():
        yield
        return
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": QUIET_WARNINGS,
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)}
    # Ray's processes started here inherit these (its pkg_resources warning, the boxed reporter of
    # Ray 2.6's new output engine that ignores verbose=0); restored on exit.
    saved = {k: os.environ.get(k) for k in ("PYTHONWARNINGS", "RAY_AIR_NEW_OUTPUT")}
    os.environ.update({"PYTHONWARNINGS": QUIET_WARNINGS, "RAY_AIR_NEW_OUTPUT": "0"})
    # A failed trial is one progress line, its row in the table and error.txt in its folder, not a
    # traceback in the driver's output.
    tune_logger = logging.getLogger("ray.tune")
    tune_level = tune_logger.level
    tune_logger.setLevel(logging.CRITICAL)
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
        tune_logger.setLevel(tune_level)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


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


def _new_state(model, source, targets, config_files, config_dict, space_path, num_samples, run_dir):
    files = [os.path.abspath(f) for f in (config_files or [])]
    for path in files:
        if not os.path.isfile(path):
            raise TransferConfigError(f"config_files: file {path!r} does not exist")
    probe = TransferConfig(model, "ml-100k", files, config_dict or {})
    config_dict = _absolute_config(config_dict or {}, probe, run_dir)
    model = model or probe["model"]
    source = source or probe["source"]
    targets = scenario_targets(probe, targets or None)
    from ..quick_start import check_domains

    check_domains(probe, targets, "targets", config_dict)
    space = SearchSpace.from_file(space_path or default_space(model))
    if space.metric:
        config_dict["valid_metric"] = space.metric
    if num_samples is not None:
        space.num_samples = int(num_samples)
        if space.num_samples < 1:
            raise TransferConfigError(f"num_samples={num_samples!r}: must be >= 1")
    default_transfer = config_dict.get("transfer", probe["transfer"]) or NO_TRANSFER
    if not source and not all(is_no_transfer(t) for t in space.trials(0, default_transfer)):
        raise TransferConfigError("source: the search space transfers layers but no source is given (--source=<name>)")
    return {
        "model": model, "source": source, "targets": targets, "config_files": files, "config_dict": config_dict,
        "space_path": space.path, "space_text": space.text, "num_samples": space.num_samples,
        "default_transfer": default_transfer,
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


def _space_of(state):
    space = SearchSpace(yaml.load(state["space_text"], Loader=yaml.FullLoader), state["space_path"])
    space.num_samples = state["num_samples"]
    return space


def _check_trials(state, target, trials, pretrained):
    """Validate every distinct trial config on the target before Ray starts (fails fast, exit 2).
    Returns the target's DomainData (its config and validation split are used by the driver)."""
    from ..data import id_tokens
    from ..quick_start import build_model, domain_config, prepare_domain

    base = {**state["config_dict"], "num_threads": state["num_threads"]}
    data = prepare_domain(domain_config(state["model"], target, state["config_files"], base, key="target"), key="target")
    if pretrained is None:  # nothing transfers: nothing to check against a source
        return data
    probe = build_model(data)
    target_ids, checked = id_tokens(data.dataset), set()
    for params in trials:
        params = {k: v for k, v in params.items() if k != BRANCH_KEY}
        config = TransferConfig(state["model"], data.config["dataset"], state["config_files"], {**base, **params})
        strategy = make_strategy(config)
        key = (strategy.label, str(config["transfer_containers"]))
        if strategy.is_identity or key in checked:
            continue
        checked.add(key)
        strategy.check(probe, pretrained.state_dict, pretrained.id_tokens or None, target_ids)
    return data


def _trial_rows(results, metric, space_trials, ends):
    """One row per trial: its configuration, best validation metric, epochs, how it ended."""
    rows = []
    for result in results:
        trial_id = os.path.basename(str(result.log_dir)).replace("trial_", "")
        record = ends.get(trial_id, {})
        params = result.config[TRIAL_KEY] if result.config else record.get("config")
        frame = result.metrics_dataframe
        best, best_epoch, model_file, reports = None, None, None, 0
        if frame is not None and metric in frame and frame[metric].notna().any():
            # A trial restarted by --resume appends a second run to progress.csv: keep the last run.
            starts = frame.index[frame["epoch"] == frame["epoch"].min()]
            frame = frame.loc[starts[-1]:]
            # RecBole keeps the checkpoint of the LAST epoch that reached the best value (>=).
            idx = frame.index[frame[metric] == frame[metric].max()][-1]
            best, best_epoch = float(frame[metric][idx]), int(frame["epoch"][idx])
            model_file, reports = frame["model_file"].iloc[-1], int(frame["epoch"].iloc[-1])
        fingerprint = frame["fingerprint"].iloc[-1] if frame is not None and "fingerprint" in frame else None
        ended = record.get("outcome", "error")
        if result.error is not None:
            first = str(result.error).strip().splitlines()
            ended = "error: " + (first[-1] if first else type(result.error).__name__)[:160]
        rows.append({
            "index": space_trials.index(params) if params in space_trials else len(space_trials),
            "trial_id": trial_id,
            "config": params, "label": describe(params), "best_valid": best, "best_epoch": best_epoch,
            "epochs": reports, "ended": ended, "stopped_early": ended.startswith("stopped"),
            "model_file": model_file, "path": result.log_dir and str(result.log_dir), "fingerprint": fingerprint,
        })
    return sorted(rows, key=lambda r: r["index"])


def trial_table(rows, metric):
    lines = [f"| # | configuration | best {metric} | best epoch | epochs run | stopped early | ended |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        best = f"{row['best_valid']:.4f}" if row["best_valid"] is not None else "-"
        lines.append(f"| {row['index'] + 1} | {row['label']} | {best} | {row['best_epoch'] or '-'} | {row['epochs']} | "
                     f"{'yes' if row['stopped_early'] else 'no'} | {row['ended']} |")
    return "\n".join(lines)


def _baseline_asha(**kwargs):
    """Ray's ASHA, except that no-transfer trials are never stopped early: they are the baseline every
    transfer arm must beat, and a baseline cut at a rung would make a weak transfer arm look better."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class BaselineASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)  # records the rung result
            return TrialScheduler.CONTINUE if is_no_transfer(trial.config[TRIAL_KEY]) else decision

    return BaselineASHA(**kwargs)


def valid_per_user(row, metric):
    """(data fingerprint, per-user validation values of ``metric`` ('valid_hit@10')) at a trial's best epoch,
    read from its checkpoint."""
    from ..trainer import load_checkpoint

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
    """How much a transfer trial's validation metric must exceed the best no-transfer trial's to win.
    ``se``: one paired standard error, sd(d) / sqrt(n) of the per-user validation differences d (both trials
    are scored on the same users and candidates); a number: that margin."""
    if setting == "se":
        return paired_se(differences)
    return float(setting)


def choose_winner(rows, setting="se", differences=None):
    """The winning row and why: the best validation metric (ties: the earlier trial, no transfer first),
    unless it is a transfer trial that beats the best no-transfer trial by no more than the margin.
    ``differences(best, scratch)``: their per-user validation differences (needed by ``se``)."""
    scored = [r for r in rows if r["best_valid"] is not None and not r["ended"].startswith("error")]
    if not scored:
        return None, "no trial reported a validation metric"
    best = max(scored, key=lambda r: (r["best_valid"], -r["index"]))
    scratch = [r for r in scored if is_no_transfer(r["config"])]
    if is_no_transfer(best["config"]) or not scratch:
        return best, "best validation metric"
    base = max(scratch, key=lambda r: (r["best_valid"], -r["index"]))
    margin = selection_margin(setting, differences(best, base) if setting == "se" else None)
    lead = best["best_valid"] - base["best_valid"]
    if lead <= margin:
        return base, f"{best['label']} led no transfer by {lead:.4f} <= margin {margin:.4f}: no transfer kept"
    return best, f"leads no transfer by {lead:.4f} > margin {margin:.4f}"


def _write_best_yaml(path, state, target, row, metric, valid, test):
    params = {k: v for k, v in row["config"].items() if k != BRANCH_KEY}
    keys = {**state["config_dict"], **params, "seed": trial_seed(state["seed"], row["config"])}
    keys["num_threads"] = state["num_threads"]
    if row["stopped_early"]:  # ASHA ended it: the same epochs reproduce the same best epoch
        keys["epochs"] = row["epochs"]
    if not is_no_transfer(params):
        keys["source_checkpoint"] = state["source_checkpoint"]
    files = " ".join(state["config_files"] + [path])
    command = (f"python run_recbole_transfer.py --model={state['model']} --source={state['source']} "
               f"--target={target} --config_files=\"{files}\"")
    header = [
        f"# Best transfer configuration for target {target!r}, chosen by Ray Tune on {metric} ({describe(params)}).",
        f"# Search: {os.path.dirname(os.path.dirname(path))}; validation {metric} {valid:.4f}; "
        f"test {', '.join(f'{k} {v:.4f}' for k, v in test.items())}.",
        "# Reproduce outside Ray (same seed, same metrics):",
        f"#   {command}",
    ]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(header) + "\n" + yaml.safe_dump(keys, sort_keys=True))
    return command


def _test_once(model_file, num_threads):
    from ..quick_start import load_transfer_model
    from ..trainer import TransferTrainer

    config, model, _dataset, _train, _valid, test = load_transfer_model(model_file, {"num_threads": num_threads})
    result = TransferTrainer(config, model, stage="analysis").evaluate(test, load_best_model=False)
    return {k: float(v) for k, v in result.items()}


def _check_run_keys(config, margin="se"):
    """The Tune metric and the epoch budget of a target config; clear errors for what Tune cannot use."""
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
    if not config["valid_metric_bigger"]:
        raise TransferConfigError(f"valid_metric={config['valid_metric']!r}: the search needs a metric where bigger is better")
    if not isinstance(config["eval_step"], int) or config["eval_step"] < 1:
        raise TransferConfigError(f"eval_step={config['eval_step']!r}: the search needs a validation every 1..N epochs")
    if not isinstance(config["epochs"], int) or config["epochs"] < 1:
        raise TransferConfigError(f"epochs={config['epochs']!r}: must be an integer >= 1")
    return _metric_key(metric), config["epochs"]


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _search_target(state, run_dir, target, space, trials, pretrained, emit, resume):
    from ray import air, tune
    from ray.tune.schedulers import FIFOScheduler

    name = _safe(target)
    path = os.path.join(run_dir, name)
    if resume and os.path.isfile(os.path.join(path, "result.json")):  # this target's search had finished
        emit(f"[{target}] search already finished: {os.path.join(path, 'result.json')}")
        with open(os.path.join(path, "result.json"), "r", encoding="utf-8") as f:
            return json.load(f)
    data = _check_trials(state, target, trials, pretrained)
    target_config, n_valid = data.config, int(data.valid_data._dataset.inter_num)
    metric, epochs = _check_run_keys(target_config, space.scratch_margin)
    if space.scheduler["type"] == "asha":
        scheduler = _baseline_asha(
            time_attr="epoch", max_t=epochs, grace_period=min(space.scheduler.get("grace_period", 3), epochs),
            reduction_factor=space.scheduler.get("reduction_factor", 3),
        )
    else:
        scheduler = FIFOScheduler()
    setup = {
        "model": state["model"], "source": state["source"], "target": target, "config_files": state["config_files"],
        "config_dict": {**state["config_dict"], "num_threads": state["num_threads"]},
        "seed": state["seed"], "source_checkpoint": state["source_checkpoint"],
    }
    trainable = tune.with_resources(tune.with_parameters(_trial, setup=setup), {"cpu": space.cpus_per_trial})
    ends_path = os.path.join(path, ENDS_FILE)
    progress = _progress_callback(target, len(trials), metric, emit, ends_path)
    saved_state = os.path.isdir(path) and any(f.startswith("experiment_state") for f in os.listdir(path))
    if resume and tune.Tuner.can_restore(path) and saved_state:
        emit(f"[{target}] resuming the search in {path}: {len(_ends(ends_path))} ended trials are kept, the others run")
        tuner = tune.Tuner.restore(path, trainable, resume_unfinished=True, resume_errored=False, restart_errored=False)
        tuner._local_tuner.get_run_config().callbacks = [progress]  # this process's progress lines
    else:
        emit(f"[{target}] {len(trials)} trials, metric {metric}, scheduler {space.scheduler['type']}, max {epochs} epochs")
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
    rows = _trial_rows(results, metric, trials, ends)
    table = trial_table(rows, metric)
    out = {"target": target, "metric": metric, "rows": rows, "table": table, "trials": len(rows),
           "trial_epochs": sum(r["epochs"] for r in rows), "errors": sum(r["ended"].startswith("error") for r in rows)}
    best, why = choose_winner(rows, space.scratch_margin, valid_differences(metric))
    fingerprint = data.fingerprint()  # every trial that reported must have been scored on the driver's data
    out.update(n_valid=n_valid, selection=why, fingerprint=fingerprint,
               same_split=all(r["fingerprint"] == fingerprint for r in rows if r["best_valid"] is not None))
    scratch = [r for r in rows if is_no_transfer(r["config"]) and r["best_valid"] is not None]
    out["scratch_valid"] = max((r["best_valid"] for r in scratch), default=None)
    if best is None:
        out.update(best=None, test_result={}, best_yaml=None, command=None)
    else:
        test = _test_once(best["model_file"], state["num_threads"])
        best_yaml = os.path.join(path, "best.yaml")
        command = _write_best_yaml(best_yaml, state, target, best, metric, best["best_valid"], test)
        out.update(best=best, test_result=test, best_yaml=best_yaml, command=command)
    with open(os.path.join(path, "trials.md"), "w", encoding="utf-8") as f:
        f.write(f"Trials of target {target} ({metric}; test metrics of the winner only)\n\n{table}\n")
    with open(os.path.join(path, "result.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, default=str)
    return out


def summary_table(outcomes):
    metric = outcomes[0]["metric"] if outcomes else "valid"
    test_key = metric.replace("valid_", "")
    lines = [f"| target | best configuration | best {metric} | scratch {metric} | test {test_key} | trials | errors | trial-epochs |",
             "|---|---|---|---|---|---|---|---|"]
    for out in outcomes:
        best = out["best"]
        scratch = f"{out['scratch_valid']:.4f}" if out["scratch_valid"] is not None else "-"
        lines.append(
            f"| {out['target']} | {best['label'] if best else '-'} | {best['best_valid']:.4f} | {scratch} | "
            f"{out['test_result'].get(test_key, float('nan')):.4f} | {out['trials']} | {out['errors']} | {out['trial_epochs']} |"
            if best else f"| {out['target']} | - | - | {scratch} | - | {out['trials']} | {out['errors']} | {out['trial_epochs']} |"
        )
    return "\n".join(lines)


def run_search(
    model=None, source=None, targets=None, config_file_list=None, config_dict=None, search_space=None,
    num_samples=None, ray_address=None, run_dir=None, resume=None, num_cpus=None, progress=None,
):
    """Search the transfer configuration of each target with Ray Tune; returns a list of per-target dicts
    (trial rows, table, best trial, its test metrics, the best.yaml path and its reproduce command).

    ``resume=<run dir>`` continues an interrupted search (all other arguments are read from it).
    Raises TransferError on bad input, SearchInterrupted when the search did not finish.
    """
    from ..quick_start import pretrain_source

    emit = progress or (lambda msg: logger.info(msg))
    if not resume and uses_patches(model):
        raise TransferConfigError(
            f"--tune: model={model!r} is fine-tuned by method (transfer: peterrec, finecls, ...); searches cover "
            f"layer transfers only for now. Compare its methods with --model={model} (the method x task table)."
        )
    _probe_address(ray_address)
    if resume:
        run_dir = os.path.abspath(resume)
        state = _load_state(run_dir)
    else:
        run_dir = os.path.abspath(run_dir or os.path.join(
            TransferConfig(model, "ml-100k", config_file_list, config_dict or {})["tune_dir"],
            time.strftime("%Y%m%d-%H%M%S")))
        if os.path.isdir(run_dir) and os.listdir(run_dir):
            raise TransferConfigError(f"run_dir={run_dir!r} is not empty: give a new directory, or --resume={run_dir}")
        state = _new_state(model, source, targets, config_file_list, config_dict, search_space, num_samples, run_dir)
        os.makedirs(run_dir, exist_ok=True)
    space = _space_of(state)
    state["num_threads"] = max(1, int(space.cpus_per_trial))
    _save_state(run_dir, state)
    emit(f"search {run_dir}: {state['model']}, source {state['source']}, targets {', '.join(state['targets'])}; {space.describe(state['default_transfer'])}")
    outcomes = []
    with contextlib.chdir(run_dir):  # RecBole writes log/ and log_tensorboard/ into the working directory
        pretrained = None
        trials = space.trials(state["seed"], state["default_transfer"])
        if not all(is_no_transfer(t) for t in trials):
            source_dict = {**state["config_dict"], "num_threads": state["num_threads"],
                           "checkpoint_dir": os.path.join(run_dir, "source")}
            if state["source_checkpoint"] and os.path.isfile(state["source_checkpoint"]):
                source_dict["source_checkpoint"] = state["source_checkpoint"]
            start = time.time()
            pretrained = pretrain_source(state["model"], state["source"], state["config_files"], source_dict, verbose=False)
            if state["source_checkpoint"] != pretrained.model_file:
                state["source_checkpoint"] = pretrained.model_file
                _save_state(run_dir, state)
                emit(f"source {state['source']!r} pretrained once in {time.time() - start:.1f}s "
                     f"(test {dict(pretrained.test_result)}); every trial loads {pretrained.model_file}")
        with ray_session(ray_address, num_cpus):
            _check_cluster(space, emit)
            for target in state["targets"]:
                out = _search_target(state, run_dir, target, space, trials, pretrained, emit, resume)
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
    return outcomes


