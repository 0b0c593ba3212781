"""The runner contract: how a method's runs go, from one command to a Ray Tune trial.

A :class:`Runner` is the part of a :class:`~recbole_transfer.registry.Method` that trains and evaluates. Two exist:
the two-stage runner (:mod:`.two_stage`: source -> strategy -> target, every method that moves weights between two
domains) and a periodic runner (online retraining over time periods), which a method brings in its folder. The shared floors call
only what this contract names:

- ``run(method, request, progress)`` -> (result, text): one command-line run and the lines it prints;
- ``scenario(method, request, arms, seeds, progress, verbose, chosen)`` -> rows: every seed x target x arm, one row
  each; with ``parallel_units`` its (seed, arm) units, or (seed, arm, part) with ``scenario_parts``, run as Ray
  tasks (:mod:`.parallel`: ``scenario_arms``, and ``seed_keys`` when ``prepares_per_seed``);
- ``tables(method, rows)`` -> (Markdown, metric of the forest plot or None): the result tables of the rows;
- for ``--tune`` (one Ray driver, :mod:`recbole_transfer.tune.search`): ``time_attr`` (what a trial counts in),
  ``prepare_search``, ``check_search``, ``trial``, ``trial_score`` and ``finish_search``.

A :class:`~recbole_transfer.request.Request` is what every command gives, resolved once: the model, the source, the
targets, config files and keys.
"""

import abc
from dataclasses import dataclass

from ..report import forest_plot


@dataclass
class SearchTarget:
    """What the driver needs of one target before its trials run: its config, the fingerprint of the data every
    trial must be scored on, how many validation units it has and the trials' time budget (in ``time_attr``)."""

    config: object
    fingerprint: str
    n_valid: int
    max_t: int


class Runner(abc.ABC):
    """See the module docstring."""

    time_attr = "epoch"
    # True: each Tune trial trains with its own seed, derived from the search's seed and its configuration (trials
    # are replicates of different configurations). False: every trial, and the comparison after the search, use the
    # search's seed (a runner whose comparison reruns every method with the winner's keys).
    seed_per_trial = True

    @abc.abstractmethod
    def run(self, method, request, progress):
        """One run (a single target). Returns (result dict, text to print)."""

    @abc.abstractmethod
    def scenario(self, method, request, arms=None, seeds=None, progress=None, verbose=False, chosen=None):
        """Every seed x target x arm. Returns a list of row dicts. ``chosen``: whether the user named the arms (None:
        ``bool(arms)``; a unit of a parallel scenario runs one arm of the default ones)."""

    # True: every (seed, arm) of the scenario is a run of its own, in any order (``--workers`` runs them as Ray tasks)
    parallel_units = False
    # True: ``seed_keys`` trains what every arm of a seed shares (once per seed, before the units of that seed)
    prepares_per_seed = False

    def scenario_arms(self, method, request, arms=None):
        """The arms a scenario runs: ``arms``, or the method's."""
        return list(arms or method.arms)

    def seed_keys(self, method, request):
        """Keys that give every unit of ``request``'s seed what the sequential run trains once per seed."""
        return {}

    part_name = "part"  # what a part is called in the progress lines

    def scenario_parts(self, method, request):
        """What a (seed, arm) unit splits into, each part a unit of its own that ``scenario(..., part=p)`` runs alone
        (the overlap family: its settings); ``[None]``: the unit runs whole."""
        return [None]

    single_run = True  # False: one run already compares every arm (the CLI runs it as a scenario)
    # True: a command without --target runs the method's scenario; False: one run on the scenario's first target
    scenario_without_target = True

    def scenario_files(self, method, model):
        """The default scenario files of a command of ``model`` (before the user's files): the method's scenario."""
        return [method.scenario] if method.scenario else []

    def evaluate_checkpoint(self, model_file, config_dict=None):
        """``--evaluate``: test a checkpoint this runner wrote, as stored; (config, {metric: value}), or None when the
        runner has no evaluation of its own (the CLI then tests it as one domain's model:
        :func:`recbole_transfer.pipeline.runner.evaluate_checkpoint`)."""
        return None

    def default_output(self, request):
        """Where a scenario writes its rows and tables when no --output is given (None: nowhere)."""
        return None

    def tables(self, method, rows):
        """(Markdown tables of ``rows``, the metric of the plot: None for each target's own)."""
        if method.tables is None:
            raise NotImplementedError(f"method {method.name!r} declares no result tables")
        return method.tables(rows)

    def plot(self, method, rows, path, plotted=None):
        """A PNG of the rows: each arm's paired gain over the baseline with its interval, per target."""
        forest_plot(rows, path, plotted)

    # ----- Ray Tune -------------------------------------------------------------------------------
    def prepare_search(self, method, state, trials, emit):
        """Once per search, before any target (e.g. pretrain the source once). May update ``state``."""

    @abc.abstractmethod
    def check_search(self, method, state, target, trials):
        """Validate every distinct trial on ``target`` before Ray starts; returns a :class:`SearchTarget`."""

    @abc.abstractmethod
    def trial(self, method, setup, params, report):
        """Run one trial in a Ray worker; ``report(metrics)`` once per ``time_attr`` unit, with ``time_attr``,
        ``recbole_done``, ``fingerprint`` and ``model_file`` keys."""

    def trial_score(self, frame, metric, max_t):
        """(score, its time, reports) of a trial from its reported rows (a DataFrame): by default the best value
        (the last time it was reached, as RecBole keeps the last best checkpoint)."""
        idx = frame.index[frame[metric] == frame[metric].max()][-1]
        return float(frame[metric][idx]), int(frame[self.time_attr][idx]), int(frame[self.time_attr].iloc[-1])

    @abc.abstractmethod
    def finish_search(self, method, state, target, best, metric):
        """After a target's trials: test the winner ``best`` (a trial row) once and write what reproduces it.
        Returns {test_result, keys}, and where the runner has them ``test_per_user``, ``test_users`` (the winner's
        per-user test values, for paired comparisons with other searches on the same data) and ``trainable``
        ([trainable parameters, all parameters])."""

    def after_search(self, method, request, outcomes, progress):
        """After every target's search: extra text to print (e.g. a full comparison run with the winner)."""
        return ""
