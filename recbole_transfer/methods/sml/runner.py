"""SML's Runner (the contract of :class:`recbole_transfer.pipeline.base.Runner`): a run, a scenario over targets
and seeds, its tables and plot, and the Ray Tune hooks. The periods and their online test are in
:mod:`.periods`, the methods and their loop in :mod:`.retraining`, the tables and the plot in :mod:`.tables`."""

import os
import time

import numpy as np

from ...errors import TransferConfigError
from ...pipeline.base import Runner, SearchTarget
from ...pipeline.two_stage import read_dataset
from ...utils import set_threads
from .periods import PeriodicData
from .retraining import METHOD_READS, check_periodic_config, run_periodic
from .tables import best_vs_best, period_table_of, plot_curves, table1


class PeriodicRunner(Runner):
    """SML's runner: every method of ``retrain_methods`` over the periods of each target dataset, tested online.

    One run already compares the methods (its arms are ``retrain_methods``), so a single command is a scenario
    of one seed. Tune trials run SML alone up to the last VALIDATION period and report, per period, the mean
    validation metric so far; only trials that ran every validation period can win. After the search, every
    method runs once over all periods with the winner's keys (the comparison table is printed).
    """

    time_attr = "period"
    single_run = False  # a run compares every method: the CLI treats it as a scenario
    seed_per_trial = False  # trials and the comparison after the search share the search's seed

    def default_output(self, request):
        return os.path.join("saved", "sml", f"{request.require_targets()[0]}-{time.strftime('%Y%m%d-%H%M%S')}")

    def run(self, method, request, progress):
        rows = self.scenario(method, request, progress=progress)
        return rows, self.tables(method, rows)[0]

    def scenario(self, method, request, arms=None, seeds=None, progress=None, verbose=False, chosen=None):
        targets = request.require_targets()
        if arms:
            request = request.with_keys(retrain_methods=list(arms))
        check_periodic_config(request.keys)  # before any dataset is read
        rows = []
        for target in targets:
            for seed in seeds or [request.seed]:
                seeded = request.with_keys(seed=seed).config(target)
                if progress:
                    progress(f"recbole_transfer: periodic retraining of {seeded['sml_base']} on {seeded['dataset']}: "
                             f"{seeded['periods']} periods ({seeded['period_by']}), last {seeded['test_periods']} tested; "
                             f"methods {check_periodic_config(seeded)}; seed {seed}")
                seen = {}
                for row in run_periodic(seeded, progress=progress, per_user=True,
                                        on_data=lambda data: seen.update(fingerprint=data.fingerprint())):
                    listed = {"per_user": {k: np.round(v, 6).tolist() for k, v in row.pop("per_user").items()},
                              "user_ids": np.asarray(row.pop("user_ids")).tolist()}
                    rows.append({**row, **listed, "target": target, "model": request.model, **seen})
        return rows

    def tables(self, method, rows):
        best = best_vs_best(rows)
        return (f"Test periods (online: the model after period t-1 is tested on period t)\n\n{table1(rows)}\n\n"
                + (f"{best}\n\n" if best else "") + f"{period_table_of(rows)}"), None

    def plot(self, method, rows, path, plotted=None):
        plot_curves(rows, path)

    # ----- Ray Tune -------------------------------------------------------------------------------
    @staticmethod
    def validation_periods(config):
        """The online periods before the test periods that a search validates on (the first period only trains)."""
        return config["periods"] - config["test_periods"] - 1

    def check_search(self, method, request, trials):
        config = request.config(request.target)
        check_periodic_config(config)
        n_valid = self.validation_periods(config)
        if n_valid < 1:
            raise TransferConfigError(
                f"test_periods={config['test_periods']}: --tune needs a validation period (periods - test_periods >= 2)"
            )
        for params in trials:
            check_periodic_config(request.with_keys(**params).keys)
        set_threads(config["num_threads"])
        data = PeriodicData(config, read_dataset(config))
        return SearchTarget(config, data.fingerprint(), n_valid, n_valid)

    @staticmethod
    def searched_method(keys):
        """The method a search tunes: the one of ``retrain_methods`` when it names one (a leaderboard arm), else SML."""
        methods = check_periodic_config(keys)
        return methods[0] if len(methods) == 1 else "sml"

    def check_arm(self, model, request, space_keys, kind, arm_keys=()):
        """A leaderboard arm runs one method: SML is the transfer arm, every other method a baseline; its space and its
        own keys name only keys that method reads (``pop`` none, ``ease`` its λ, ...), so every arm runs the
        family's one protocol (the periods, the tested periods, the metric)."""
        methods = check_periodic_config(request.keys)
        if len(methods) != 1:
            raise TransferConfigError(f"retrain_methods={methods!r}: a leaderboard arm runs one method (its keys: "
                                      "{retrain_methods: [<one of " + ", ".join(METHOD_READS) + ">]})")
        name = methods[0]
        if (kind == "transfer") != (name == "sml"):
            raise TransferConfigError(f"kind {kind!r} with retrain method {name!r}: SML is the transfer arm, every other "
                                      "method a baseline")
        reads = METHOD_READS[name]
        for what, keys in (("space key", space_keys), ("key", set(arm_keys) - {"retrain_methods"})):
            unread = sorted(set(keys) - reads)
            if unread:
                raise TransferConfigError(f"{what} {unread[0]!r}: retrain method {name!r} does not read it (an arm "
                                          f"changes only its method's keys); the keys it reads: "
                                          f"{', '.join(sorted(reads)) or 'none'}")

    def trial(self, method, request, report):
        config = request.with_keys(retrain_methods=[self.searched_method(request.keys)]).config(request.target)
        metric, last = str(config["valid_metric"]).lower(), self.validation_periods(config)
        scores, fingerprint = [], {}

        def on_result(row):
            scores.append(row[metric])
            report({f"valid_{metric}": float(np.mean(scores)), "period": len(scores),
                    "recbole_done": len(scores) == last, "fingerprint": fingerprint.get("value"), "model_file": None})

        run_periodic(config, on_result=on_result, last_period=last,
                     on_data=lambda data: fingerprint.update(value=data.fingerprint()))

    def trial_score(self, frame, metric, max_t):
        """The mean validation metric over every validation period; None for a trial stopped before the last."""
        reports = int(frame[self.time_attr].iloc[-1])
        return (float(frame[metric].iloc[-1]) if reports == max_t else None), reports, reports

    def finish_search(self, method, state, target, best, metric):
        """The winner's method over every period, once, with the trials' seed: its test metrics are the means over the
        test periods (as Table 1 averages them). Its per-user values are one per (test period, user), listed under the
        user's id: a paired comparison averages each user over the periods she was tested in, so the user, not the
        (period, user) pair, is the unit its bootstrap resamples."""
        request = state.trial_request(method, target, best["config"])
        name = self.searched_method(request.keys)
        config = request.with_keys(retrain_methods=[name]).config(target)
        rows = [r for r in run_periodic(config, methods=[name], per_user=True) if r["phase"] == "test"]
        keys = [k for k in rows[0] if k.split("_")[-1] in rows[0]["per_user"]]  # metric@K and warm_metric@K
        test = {k: float(np.nanmean([r[k] for r in rows])) for k in keys}
        users = np.concatenate([r["user_ids"] for r in rows])
        per_user = {k: np.round(np.concatenate([r["per_user"][k] for r in rows]), 6).tolist() for k in rows[0]["per_user"]}
        return {"test_result": test, "keys": {}, "test_per_user": per_user,
                "test_users": users.tolist()}

    def after_search(self, method, request, outcomes, progress):
        """Every method of ``retrain_methods``, over all periods, with each target's winning keys."""
        parts = []
        for out in outcomes:
            if not out["best"]:
                continue
            params = {k: v for k, v in out["best"]["config"].items() if k != "branch"}  # a trial's keys, not its branch
            winner = request.with_keys(**params).for_target(out["target"])
            rows = self.scenario(method, winner, progress=progress)
            parts.append(f"{out['target']}, every method with the winner's keys ({out['best']['label']}) and the search's "
                         f"seed (every trial's seed too):\n\n"
                         + self.tables(method, rows)[0])
        return "\n\n".join(parts)
