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

This module is the driver; the search's state is :mod:`.state`, the cluster :mod:`.cluster`, the trials on Ray's side
:mod:`.trials`, the choice of the winner :mod:`.selection`, the tables :mod:`.tables`.
"""

import contextlib
import json
import logging
import os
import time

from .. import registry
from ..errors import TransferConfigError, TransferError
from ..pipeline.scenario import check_strategies
from ..request import Request
from .cluster import check_cluster, import_roots, probe_address, ray_session
from .selection import check_run_keys, choose_winner, valid_differences
from .space import SearchSpace
from .state import SearchState, params_of
from .tables import summary_table, trial_table, write_best_yaml
from .trials import ENDS_FILE, TRIAL_KEY, baseline_asha, ended, progress_callback, trainable, trial_rows

logger = logging.getLogger(__name__)


class SearchInterrupted(TransferError):
    """The search stopped before all trials ended (Ctrl-C, lost cluster); it can be resumed."""


def _safe(name):
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in str(name))


def _search_target(method, state, target, space, trials, emit, resume):
    from ray import air, tune
    from ray.tune.schedulers import FIFOScheduler

    path = os.path.join(state.run_dir, _safe(target))
    if resume and os.path.isfile(os.path.join(path, "result.json")):  # this target's search had finished
        emit(f"[{target}] search already finished: {os.path.join(path, 'result.json')}")
        with open(os.path.join(path, "result.json"), "r", encoding="utf-8") as f:
            return json.load(f)
    checked = method.runner.check_search(method, state.request(target), [params_of(t) for t in trials])
    metric, max_t, time_attr = check_run_keys(checked.config, space.scratch_margin), checked.max_t, method.runner.time_attr
    if space.scheduler["type"] == "asha":
        scheduler = baseline_asha(
            method, time_attr=time_attr, max_t=max_t, grace_period=min(space.scheduler.get("grace_period", 3), max_t),
            reduction_factor=space.scheduler.get("reduction_factor", 3),
        )
    else:
        scheduler = FIFOScheduler()
    setup = {"state": state, "target": target, "method_module": method.module,
             "negated": [metric.replace("valid_neg_", "valid_", 1), metric] if metric.startswith("valid_neg_") else None}
    runnable = tune.with_resources(tune.with_parameters(trainable, setup=setup), {"cpu": space.cpus_per_trial})
    ends_path = os.path.join(path, ENDS_FILE)
    progress = progress_callback(method, target, len(trials), metric, emit, ends_path)
    saved_state = os.path.isdir(path) and any(f.startswith("experiment_state") for f in os.listdir(path))
    if resume and tune.Tuner.can_restore(path) and saved_state:
        emit(f"[{target}] resuming the search in {path}: {len(ended(ends_path))} ended trials are kept, the others run")
        tuner = tune.Tuner.restore(path, runnable, resume_unfinished=True, resume_errored=False, restart_errored=False)
        tuner._local_tuner.get_run_config().callbacks = [progress]  # this process's progress lines
    else:
        emit(f"[{target}] {len(trials)} trials, metric {metric}, scheduler {space.scheduler['type']}, max {max_t} {time_attr}s")
        tuner = tune.Tuner(
            runnable,
            param_space={TRIAL_KEY: tune.grid_search(trials)},
            tune_config=tune.TuneConfig(
                metric=metric, mode="max", scheduler=scheduler, trial_dirname_creator=lambda t: f"trial_{t.trial_id}",
                reuse_actors=True,
            ),
            run_config=air.RunConfig(
                name=_safe(target), storage_path=state.run_dir, verbose=0, callbacks=[progress],
                failure_config=air.FailureConfig(max_failures=0), sync_config=tune.SyncConfig(syncer=None),
            ),
        )
    results = tuner.fit()
    ends = ended(ends_path)
    if len(ends) < len(trials):
        raise SearchInterrupted(
            f"search of target {target!r} stopped with {len(ends)}/{len(trials)} trials ended; "
            f"continue it with --resume={state.run_dir}"
        )
    rows = trial_rows(method, results, metric, trials, ends, max_t)
    table = trial_table(rows, metric, time_attr)
    out = {"target": target, "metric": metric, "time_attr": time_attr, "rows": rows, "table": table, "trials": len(rows),
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
        command = write_best_yaml(method, best_yaml, state, target, best, metric, finished["test_result"], finished["keys"])
        out.update(best=best, test_result=finished["test_result"], best_yaml=best_yaml, command=command,
                   **{k: finished[k] for k in ("test_per_user", "test_users", "trainable") if k in finished})
    with open(os.path.join(path, "trials.md"), "w", encoding="utf-8") as f:
        f.write(f"Trials of target {target} ({metric}; test metrics of the winner only)\n\n{table}\n")
    with open(os.path.join(path, "result.json"), "w", encoding="utf-8") as f:
        json.dump(out, f, indent=1, default=str)
    return out


def run_search(
    model=None, source=None, targets=None, config_file_list=None, config_dict=None, search_space=None,
    num_samples=None, ray_address=None, run_dir=None, resume=None, num_cpus=None, progress=None, request=None,
    after=True,
):
    """Search the configuration of each target with Ray Tune, for the method of ``model``; returns a list of
    per-target dicts (trial rows, table, best trial, its test metrics, the best.yaml path and its reproduce
    command), and the text of the runner's ``after_search`` under ``outcomes[0]['after']``.

    ``request``: the search's :class:`~recbole_transfer.request.Request` (instead of model ... config_dict).
    ``after=False`` skips the runner's ``after_search`` (the leaderboard compares arms itself).
    ``resume=<run dir>`` continues an interrupted search (all other arguments are read from it).
    Raises TransferError on bad input, SearchInterrupted when the search did not finish.
    """
    emit = progress or (lambda msg: logger.info(msg))
    probe_address(ray_address, num_cpus)
    if num_samples is not None and int(num_samples) < 1:
        raise TransferConfigError(f"num_samples={num_samples!r}: must be >= 1")
    if resume:
        state = SearchState.load(os.path.abspath(resume))
        method = registry.method_of(state.model)
    else:
        request = request or Request(model, source, targets, config_file_list or (), config_dict)
        method = request.method
        run_dir = os.path.abspath(run_dir or os.path.join(request.keys["tune_dir"], time.strftime("%Y%m%d-%H%M%S")))
        if os.path.isdir(run_dir) and os.listdir(run_dir):
            raise TransferConfigError(f"run_dir={run_dir!r} is not empty: give a new directory, or --resume={run_dir}")
        space = SearchSpace.from_file(search_space, method)
        if num_samples is not None:
            space.num_samples = int(num_samples)
        state = SearchState.new(method, request, space, run_dir)
        os.makedirs(run_dir, exist_ok=True)
    space = state.space(method)
    state.num_threads = max(1, int(space.cpus_per_trial))
    state.save()
    emit(f"search {state.run_dir}: {state.model} (method {method.name}), source {state.source}, targets "
         f"{', '.join(state.targets)}; {space.describe(state.default_transfer)}")
    outcomes = []
    with contextlib.chdir(state.run_dir):  # RecBole writes log/ and log_tensorboard/ into the working directory
        trials = space.trials(state.seed, state.default_transfer)
        if not trials:
            raise TransferConfigError(f"search space {space.path}: no trial for model {state.model}")
        check_strategies(method, state.request(), [params_of(t) for t in trials])
        start = time.time()
        method.runner.prepare_search(method, state, [params_of(t) for t in trials], emit)
        if state.source_checkpoint:
            state.save()
            emit(f"search prepared in {time.time() - start:.1f}s")
        with ray_session(ray_address, num_cpus, import_roots(method)):
            check_cluster(space, emit)
            for target in state.targets:
                out = _search_target(method, state, target, space, trials, emit, resume)
                outcomes.append(out)
                best = out["best"]
                if best:
                    emit(f"[{target}] best: {best['label']} ({out['metric']} {best['best_valid']:.4f}; {out['selection']}); "
                         f"test {out['test_result']}; reproduce: {out['command']}")
    with open(os.path.join(state.run_dir, "summary.md"), "w", encoding="utf-8") as f:
        f.write(summary_table(outcomes) + "\n")
    state.finished = True
    state.save()
    for out in outcomes:
        out["run_dir"] = state.run_dir
    after = method.runner.after_search(method, state.request(), outcomes, emit) if after else ""
    for out in outcomes:
        out["after"] = after
    return outcomes
