"""Typed search spaces for transfer configurations, read from YAML.

A search-space file::

    metric: ~             # the validation metric to select on; default: the config's valid_metric
    num_samples: 1        # random draws per grid point of a branch (a branch with no random entry runs once)
    scheduler: {type: asha, grace_period: 3, reduction_factor: 3}   # or {type: fifo}
    cpus_per_trial: 1
    scratch_margin: se    # a transfer trial must beat no transfer on validation by more than this to win
    add_baseline: true    # false: the space's trials alone (the leaderboard tunes the baseline as an arm of its own)
    parameters:           # entries used in every branch
      learning_rate: {type: float, low: 0.0005, high: 0.01, log: true}
    branches:             # one per strategy; an entry inside a branch only exists in that branch
      none: {transfer: none}
      layers:
        transfer: {type: grid, values: [arm-1, arm-2, arm-3]}
        another_key: {type: choice, values: [a, b]}

Entry types: a plain value (fixed), ``{type: float|int, low, high, log}``, ``{type: choice, values}``
(one drawn at random per sample), ``{type: grid, values}`` (every value, crossed with the branch's other
grids). A branch named after a model of the method holds that model's keys: a search of another model leaves it out. Entry names are RecBole or recbole_transfer config keys, so every method's strategy plugs in as
branches with its own keys. The method's baseline arm (``Method.baseline``, e.g. no transfer) is always a
trial: when no expanded trial is one, it is added (unless ``add_baseline: false``). A branch without a ``transfer`` entry uses the run's own
``transfer`` key (for a method with a strategy). Each method ships its default space (``methods/<name>/space.yaml``).

Branches are expanded here, before Ray sees them, into a list of concrete trial configurations
(random entries drawn with Ray Tune's own samplers under a seeded random state): Ray 2.6.3 cannot
resolve a random entry nested inside a grid value, and a fixed list makes a search resumable and the
same for the same seed.
"""

import itertools
import os

import numpy as np
import yaml
from ray import tune

from .. import registry
from ..keys import plugin_keys, recbole_keys
from ..errors import TransferConfigError, did_you_mean
from ..transfer import NO_TRANSFER


TOP_KEYS = ("metric", "num_samples", "scheduler", "cpus_per_trial", "scratch_margin", "add_baseline", "parameters", "branches")
ENTRY_TYPES = ("float", "int", "choice", "grid")
ENTRY_KEYS = {"float": {"low", "high", "log"}, "int": {"low", "high", "log"}, "choice": {"values"}, "grid": {"values"}}
SCHEDULERS = {"asha": {"grace_period", "reduction_factor"}, "fifo": set()}
BRANCH_KEY = "branch"  # trial configs carry their branch name under this key
# Keys that change what a trial trains and is scored on: searching them would compare trials on different data.
DATA_KEYS = frozenset({
    "data_seed", "keep_fraction", "user_holdout", "eval_args", "load_col", "unload_col", "user_inter_num_interval",
    "item_inter_num_interval", "val_interval", "rm_dup_inter", "filter_inter_by_user_or_item", "domains",
    "benchmark_filename", "threshold", "protocol_dir", "candidate_draw",
})
ADDED_BASELINE = "baseline (added)"  # branch of the baseline arm added to a space that has none


def _err(where, msg):
    return TransferConfigError(f"search space {where}: {msg}")


class Entry:
    """One validated search-space entry: fixed, float, int, choice or grid."""

    def __init__(self, where, spec):
        self.where = where
        if not (isinstance(spec, dict) and "type" in spec):
            self.kind, self.values = "fixed", [spec]
            return
        kind = spec["type"]
        if kind not in ENTRY_TYPES:
            raise _err(where, f"type {kind!r} unknown{did_you_mean(kind, ENTRY_TYPES)}; allowed: {', '.join(ENTRY_TYPES)}")
        self.kind = kind
        for key in spec:
            if key != "type" and key not in ENTRY_KEYS[kind]:
                raise _err(f"{where}.{key}", f"not a key of a {kind} entry{did_you_mean(key, ENTRY_KEYS[kind])}; "
                           f"allowed: {', '.join(sorted(ENTRY_KEYS[kind]))}")
        if kind in ("choice", "grid"):
            values = spec.get("values")
            if not isinstance(values, list) or not values:
                raise _err(f"{where}.values", f"expected a non-empty list, got {values!r}")
            self.values = values
            self.domain = tune.choice(values) if kind == "choice" else None
            return
        low, high, log = spec.get("low"), spec.get("high"), spec.get("log", False)
        number = (int,) if kind == "int" else (int, float)
        for key, value in (("low", low), ("high", high)):
            if isinstance(value, bool) or not isinstance(value, number):
                raise _err(f"{where}.{key}", f"expected a{'n int' if kind == 'int' else ' number'}, got {value!r}")
        if not low < high:
            raise _err(where, f"low={low} must be below high={high}")
        if not isinstance(log, bool):
            raise _err(f"{where}.log", f"expected true or false, got {log!r}")
        if log and low <= 0:
            raise _err(f"{where}.low", f"log scale needs low > 0, got {low}")
        if kind == "float":
            self.domain = tune.loguniform(low, high) if log else tune.uniform(low, high)
        else:  # Ray's int domains exclude high: the YAML's high is inclusive
            self.domain = tune.lograndint(low, high + 1) if log else tune.randint(low, high + 1)
        self.values = [low, high]

    @property
    def is_random(self):
        return self.kind in ("float", "int", "choice")

    def sample(self, rng):
        value = self.domain.sample(random_state=rng)
        return value.item() if isinstance(value, np.generic) else value


class SearchSpace:
    """A validated search space; :meth:`trials` expands it into concrete trial configurations."""

    def __init__(self, spec, path="<dict>", method=None):
        self.path = path
        self.method = method or registry.default_method()
        self.model = None  # set: branches named after ANOTHER model of the method are left out (model-specific keys)
        if not isinstance(spec, dict):
            raise _err(path, f"expected a mapping with keys {', '.join(TOP_KEYS)}")
        for key in spec:
            if key not in TOP_KEYS:
                raise _err(key, f"unknown key{did_you_mean(key, TOP_KEYS)}; allowed: {', '.join(TOP_KEYS)}")
        self.metric = spec.get("metric")
        self.num_samples = spec.get("num_samples", 1)
        if isinstance(self.num_samples, bool) or not isinstance(self.num_samples, int) or self.num_samples < 1:
            raise _err("num_samples", f"expected an integer >= 1, got {self.num_samples!r}")
        self.cpus_per_trial = spec.get("cpus_per_trial", 1)
        if isinstance(self.cpus_per_trial, bool) or not isinstance(self.cpus_per_trial, (int, float)) or self.cpus_per_trial <= 0:
            raise _err("cpus_per_trial", f"expected a positive number, got {self.cpus_per_trial!r}")
        self.scheduler = self._scheduler(spec.get("scheduler") or {"type": "asha"})
        self.scratch_margin = spec.get("scratch_margin", "se")
        margin = self.scratch_margin
        if margin != "se" and (isinstance(margin, bool) or not isinstance(margin, (int, float)) or margin < 0):
            raise _err("scratch_margin", f"expected 'se' or a number >= 0, got {margin!r}")
        known = plugin_keys() | recbole_keys()
        data_keys = DATA_KEYS | self.method.data_keys
        self.parameters = self._entries("parameters", spec.get("parameters") or {}, known, data_keys)
        branches = spec.get("branches") or {}
        if not isinstance(branches, dict):
            raise _err("branches", f"expected a mapping of branch name -> entries, got {branches!r}")
        self.branches = {str(name): self._entries(f"branches.{name}", body or {}, known, data_keys) for name, body in branches.items()}
        if not self.branches:
            self.branches = {"all": {}}
        for name, entries in self.branches.items():
            if "transfer" in entries and "transfer" in self.parameters:
                raise _err(f"branches.{name}.transfer", "also given under parameters: give it in one place")
            entry = entries.get("transfer") or self.parameters.get("transfer")
            for value in entry.values if entry is not None and entry.kind != "float" else []:
                if self.method.strategy is None:
                    raise _err(entry.where, f"method {self.method.name!r} has no transfer strategy")
                try:
                    self.method.strategy.arm_label(value)
                except TransferConfigError as exc:
                    raise _err(entry.where, str(exc)) from None
        self.add_baseline = spec.get("add_baseline", True)
        if not isinstance(self.add_baseline, bool):
            raise _err("add_baseline", f"expected true or false, got {self.add_baseline!r}")
        self.added_baseline = False

    @classmethod
    def from_file(cls, path=None, method=None):
        method = method or registry.default_method()
        if path is None and method.space is None:
            raise TransferConfigError(f"search_space: method {method.name!r} ships no default search space; give --search_space=<file>")
        path = os.path.abspath(path or method.space)
        if not os.path.isfile(path):
            raise TransferConfigError(f"search_space: file {path!r} does not exist")
        with open(path, "r", encoding="utf-8") as f:
            try:
                spec = yaml.load(f.read(), Loader=yaml.FullLoader)
            except yaml.YAMLError as exc:
                raise TransferConfigError(f"search_space: {path!r} is not valid YAML ({str(exc).splitlines()[0]})") from None
        space = cls(spec, path, method)
        space.text = open(path, "r", encoding="utf-8").read()
        return space

    @staticmethod
    def _scheduler(spec):
        if not isinstance(spec, dict) or spec.get("type") not in SCHEDULERS:
            kind = spec.get("type") if isinstance(spec, dict) else spec
            raise _err("scheduler.type", f"{kind!r} unknown{did_you_mean(kind, SCHEDULERS)}; allowed: {', '.join(SCHEDULERS)}")
        for key in spec:
            if key != "type" and key not in SCHEDULERS[spec["type"]]:
                raise _err(f"scheduler.{key}", f"not a {spec['type']} setting{did_you_mean(key, SCHEDULERS[spec['type']])}; "
                           f"allowed: {', '.join(sorted(SCHEDULERS[spec['type']])) or 'none'}")
            least = 2 if key == "reduction_factor" else 1
            if key != "type" and (isinstance(spec[key], bool) or not isinstance(spec[key], int) or spec[key] < least):
                raise _err(f"scheduler.{key}", f"expected an integer >= {least}, got {spec[key]!r}")
        return dict(spec)

    @staticmethod
    def _entries(where, body, known, data_keys=DATA_KEYS):
        if not isinstance(body, dict):
            raise _err(where, f"expected a mapping of config key -> entry, got {body!r}")
        entries = {}
        for key, spec in body.items():
            if key == BRANCH_KEY or key not in known:
                raise _err(f"{where}.{key}", f"not a RecBole or recbole_transfer config key{did_you_mean(key, known)}")
            if key in data_keys:
                raise _err(f"{where}.{key}", "changes the data, but every trial of a search is scored on the same data "
                                             f"(its protocol); set {key} for the whole search (--{key}=...) instead")
            entries[key] = Entry(f"{where}.{key}", spec)
        return entries

    def trials(self, seed, default_transfer=NO_TRANSFER):
        """Concrete trial configurations: every branch x grid point x sample, random entries drawn with a
        random state seeded by ``seed``. Each is a dict of config keys plus ``branch``; a branch without
        a ``transfer`` entry gets ``default_transfer`` (the run's own config), for a method with a strategy.
        The method's baseline trial is put first when no point of the space is one (``added_baseline``)."""
        rng = np.random.RandomState(seed)
        out, seen = [], set()
        for name, entries in self.branches.items():
            if self.model is not None and name in self.method.models and name != self.model:
                continue  # a branch named after another model of the method: that model's keys
            merged = {**self.parameters, **entries}
            if self.method.strategy is not None:
                merged.setdefault("transfer", Entry(f"branches.{name}.transfer", default_transfer))
            grid_keys = [k for k, e in merged.items() if e.kind in ("fixed", "grid")]
            random_keys = [k for k, e in merged.items() if e.is_random]
            samples = self.num_samples if random_keys else 1
            for point in itertools.product(*(merged[k].values for k in grid_keys)):
                for _ in range(samples):
                    trial = {BRANCH_KEY: name, **dict(zip(grid_keys, point))}
                    trial.update({k: merged[k].sample(rng) for k in random_keys})
                    key = repr(sorted(trial.items(), key=lambda kv: kv[0]))
                    if key not in seen:  # e.g. two branches that both hold transfer: none
                        seen.add(key)
                        out.append(trial)
        baseline = self.method.baseline_trial() if self.add_baseline else None
        self.added_baseline = baseline is not None and not any(self.method.is_baseline(t) for t in out)
        if self.added_baseline:
            out.insert(0, {BRANCH_KEY: ADDED_BASELINE, **baseline})
        return out

    def describe(self, default_transfer=NO_TRANSFER):
        n = len(self.trials(0, default_transfer))
        names = ", ".join(b for b in self.branches if self.model is None or b not in self.method.models or b == self.model)
        extra = f" ('{self.method.baseline_arm}' added: the baseline is always an arm)" if self.added_baseline else ""
        return f"{os.path.basename(self.path)}: {n} trials per target, branches {names}{extra}, scheduler {self.scheduler['type']}"
