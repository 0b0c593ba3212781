"""The trials of a search, on Ray's side: the trainable a worker runs (the method's runner runs one trial), the record
of how each trial ended (``trial_ends.jsonl``; a resumed search knows what ended), the progress line per ended trial,
one row per trial from Ray's results, and ASHA that never stops a baseline trial."""

import json
import os

from .. import registry
from ..logs import trial_logging
from .state import params_of

TRIAL_KEY = "trial"  # Ray's config of a trial: {"trial": {config keys..., "branch": name}}
ENDS_FILE = "trial_ends.jsonl"


def describe(method, trial):
    """Short text of a trial configuration, e.g. ``<arm> <variant> lr=0.0021``."""
    return method.describe(params_of(trial))


def trainable(config, setup):
    """A Ray Tune trainable: the method's runner runs one trial; RecBole's per-epoch logs go to its recbole.log.
    Logging is configured here because a Ray worker is an entry point of its own."""
    from ray.air import session

    trial_logging()
    state = setup["state"]
    method = registry.load(state.method, setup["method_module"])
    request = state.trial_request(method, setup["target"], config[TRIAL_KEY])  # its keys and its training seed
    negated = setup.get("negated")  # [reported key, key of its negation] for a smaller-is-better metric

    def report(metrics):
        if negated and negated[0] in metrics:
            metrics = {**metrics, negated[1]: -float(metrics[negated[0]])}
        session.report(metrics)

    method.runner.trial(method, request, report)


def ended(path):
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


def progress_callback(method, target, total, metric, emit, ends_path):
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
            done = len(ended(ends_path))
            shown = "ERROR (recorded, search goes on)" if outcome == "error" else outcome
            emit(f"[{target}] trial {done}/{total} {describe(method, trial.config[TRIAL_KEY]):<22} {score}  "
                 f"{method.runner.time_attr}s {epochs:>3}  {shown}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            finished = (trial.last_result or {}).get("recbole_done", False)
            self._end(trial, "finished" if finished else "stopped early (ASHA)")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial, "error")

    return Progress()


def trial_rows(method, results, metric, space_trials, ends, max_t):
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


def baseline_asha(method, **kwargs):
    """Ray's ASHA, except that the method's baseline trials are never stopped early: they are what every
    transfer arm must beat, and a baseline cut at a rung would make a weak transfer arm look better."""
    from ray.tune.schedulers import ASHAScheduler, TrialScheduler

    class BaselineASHA(ASHAScheduler):
        def on_trial_result(self, tune_controller, trial, result):
            decision = super().on_trial_result(tune_controller, trial, result)  # records the rung result
            return TrialScheduler.CONTINUE if method.is_baseline(params_of(trial.config[TRIAL_KEY])) else decision

    return BaselineASHA(**kwargs)
