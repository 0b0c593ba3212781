"""Ray Tune over SML's hyper-parameters, selected on the validation periods (``--model=SML --tune``).

Trials are the concrete configurations of a :class:`SearchSpace` (default ``properties/tune/sml.yaml``).
Each trial runs SML's online loop up to the last VALIDATION period and never reaches a test period; after
each validation period it reports the mean of the validation metric so far (``period`` is the time unit
ASHA stops on). The winner (best mean validation metric) is then run once over every period, beside the
baselines of ``retrain_methods``, and its Table 1 is printed; ``best.yaml`` reproduces it outside Ray.
"""

import json
import logging
import os
import time
import warnings

import numpy as np
import yaml

from ..config import TransferConfig
from ..errors import TransferConfigError
from ..utils import property_file
from .search import ray_session
from .space import BRANCH_KEY, SearchSpace

SML_SPACE = property_file("tune", "sml.yaml")
TRIAL_KEY = "trial"


def _params(trial):
    return {k: v for k, v in trial.items() if k not in (BRANCH_KEY, "transfer")}


def _trial(config, setup):
    from ray.air import session

    from ..trainer.periodic import run_periodic

    warnings.filterwarnings("ignore", category=FutureWarning)
    logging.getLogger().setLevel(logging.WARNING)
    keys = {**setup["keys"], **_params(config[TRIAL_KEY]), "retrain_methods": ["sml"]}
    trial_config = TransferConfig("SML", setup["dataset"], None, keys)
    scores = []

    def report(row):
        scores.append(row[setup["metric"]])
        session.report({setup["report"]: float(np.mean(scores)), "period": len(scores)})

    run_periodic(trial_config, on_result=report, last_period=setup["last_valid"])


def run_periodic_search(config, search_space=None, num_samples=None, run_dir=None, ray_address=None, num_cpus=None,
                        progress=print):
    """Search SML's keys on the validation periods of ``config`` (a TransferConfig of model SML)."""
    from ray import air, tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from ..trainer.periodic import PERIOD_METRICS, check_periodic_config

    check_periodic_config(config)
    space = SearchSpace.from_file(search_space or SML_SPACE)
    if num_samples is not None:
        space.num_samples = int(num_samples)
    metric = str(space.metric or config["valid_metric"]).lower()
    computed = {f"{m}@{k}" for m in PERIOD_METRICS for k in config["topk"]}
    if metric not in computed:
        raise TransferConfigError(f"valid_metric={metric!r}: SML computes {sorted(computed)}")
    n_valid = config["periods"] - config["test_periods"] - 1
    if n_valid < 1:
        raise TransferConfigError(
            f"test_periods={config['test_periods']}: --tune needs a validation period (periods - test_periods >= 2)"
        )
    trials = space.trials(config["seed"])
    run_dir = os.path.abspath(run_dir or os.path.join(config["tune_dir"], time.strftime("sml-%Y%m%d-%H%M%S")))
    os.makedirs(run_dir, exist_ok=True)
    keys = config.reload_dict()
    keys.pop("model", None)
    setup = {"keys": keys, "dataset": config["dataset"], "metric": metric, "report": f"valid_{metric}",
             "last_valid": n_valid}
    if space.scheduler["type"] == "asha":
        scheduler = ASHAScheduler(time_attr="period", max_t=n_valid, grace_period=min(space.scheduler.get("grace_period", 1), n_valid),
                                  reduction_factor=space.scheduler.get("reduction_factor", 2))
    else:
        scheduler = FIFOScheduler()
    progress(f"SML search on {config['dataset']}: {len(trials)} trials, {n_valid} validation periods, metric "
             f"{metric}, scheduler {space.scheduler['type']}; run dir {run_dir}")
    with ray_session(ray_address, num_cpus):
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(_trial, setup=setup), {"cpu": space.cpus_per_trial}),
            param_space={TRIAL_KEY: tune.grid_search(trials)},
            tune_config=tune.TuneConfig(metric=setup["report"], mode="max", scheduler=scheduler),
            run_config=air.RunConfig(
                name="sml", storage_path=run_dir, verbose=0, callbacks=[_Progress(len(trials), setup["report"], progress)],
                failure_config=air.FailureConfig(max_failures=0), sync_config=tune.SyncConfig(syncer=None),
            ),
        )
        results = tuner.fit()
    rows = []
    for result in results:
        params = _params(result.config[TRIAL_KEY])
        history = result.metrics_dataframe
        best = float(history[setup["report"]].iloc[-1]) if history is not None and len(history) else float("nan")
        periods = int(history["period"].iloc[-1]) if history is not None and len(history) else 0
        rows.append({"params": params, "valid": best, "periods": periods, "error": str(result.error)[:200] if result.error else None})
    ok = [r for r in rows if r["error"] is None and r["periods"] == n_valid]
    if not ok:
        raise TransferConfigError(f"SML search: no trial finished its {n_valid} validation periods (see {run_dir})")
    winner = max(ok, key=lambda r: r["valid"])
    table = trial_table(rows, metric, n_valid)
    best_path = os.path.join(run_dir, "best.yaml")
    command = f"python run_recbole_transfer.py --model=SML --dataset={config['dataset']} --config_files={best_path}"
    with open(best_path, "w", encoding="utf-8") as f:
        f.write(f"# SML keys chosen by Ray Tune on the mean validation {metric} over {n_valid} periods "
                f"({winner['valid']:.4f}), with the run's other keys.\n# Reproduce (every method, all periods):\n#   {command}\n")
        f.write(yaml.safe_dump({**{k: v for k, v in keys.items() if k != "dataset"}, **winner["params"]}, sort_keys=True))
    with open(os.path.join(run_dir, "trials.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    return {"rows": rows, "winner": winner, "table": table, "best_yaml": best_path, "command": command, "run_dir": run_dir}


def _describe(params):
    """``key=value, ...`` of a trial's keys, sorted, floats to 3 significant digits."""
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def _Progress(total, metric, emit):
    from ray import tune

    class Progress(tune.Callback):
        done = 0

        def _end(self, trial, outcome):
            Progress.done += 1
            params = _describe(_params(trial.config[TRIAL_KEY]))
            value = (trial.last_result or {}).get(metric)
            shown = f"{metric} {value:.4f}" if value is not None else "no result"
            emit(f"trial {Progress.done}/{total} {params}: {shown} after {(trial.last_result or {}).get('period', 0)} "
                 f"validation periods, {outcome}")

        def on_trial_complete(self, iteration, trials, trial, **info):
            self._end(trial, "ended")

        def on_trial_error(self, iteration, trials, trial, **info):
            self._end(trial, "ERROR (recorded)")

    return Progress()


def trial_table(rows, metric, n_valid):
    lines = [f"| trial | mean valid {metric} | validation periods run | how it ended |", "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -np.nan_to_num(r["valid"], nan=-1)):
        params = _describe(r["params"])
        ended = "error: " + r["error"] if r["error"] else ("finished" if r["periods"] == n_valid else "stopped early (ASHA)")
        lines.append(f"| {params} | {r['valid']:.4f} | {r['periods']}/{n_valid} | {ended} |")
    return "\n".join(lines)
