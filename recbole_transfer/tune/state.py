"""What a search is, kept in its run directory (``search.json``) so that an interrupted search resumes: the
:class:`SearchState`, and how each trial's request and training seed derive from it."""

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field

import yaml

from ..errors import TransferConfigError
from ..request import Request
from ..utils import stable_hash
from .space import BRANCH_KEY, SearchSpace

STATE_FILE = "search.json"


def params_of(trial):
    """The config keys of a trial (its branch name dropped)."""
    return {k: v for k, v in trial.items() if k != BRANCH_KEY}


def trial_seed(seed, params, method=None):
    """The seed of a trial: a stable function of the global seed and the trial's configuration (the global seed
    itself for a runner whose trials share it, ``seed_per_trial = False``)."""
    if method is not None and not method.runner.seed_per_trial:
        return int(seed)
    return int(stable_hash({"seed": seed, "trial": params_of(params)}), 16) % (2**31 - 1)


@dataclass
class SearchState:
    """A search: its method and model, source and targets, the request's files and keys (paths made absolute, the
    data seed fixed: every trial is scored on the same data), its space, its run directory, the global seed, and what
    preparing it produced (the source checkpoint every trial loads)."""

    method: str
    model: str
    source: str
    targets: list
    config_files: list
    config_dict: dict
    space_path: str
    space_text: str
    num_samples: int
    default_transfer: object
    run_dir: str
    seed: int
    num_threads: int = None
    source_checkpoint: str = None
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M:%S"))
    finished: bool = False

    @classmethod
    def new(cls, method, request, space, run_dir):
        """The state of a new search of ``request`` over ``space`` (:class:`SearchSpace`) in ``run_dir``."""
        request.check_domains(request.require_targets(), "targets")
        keys = request.keys
        config_dict = dict(request.config_dict)
        # paths a trial needs, made absolute (Tune runs each trial in its own directory); derived domains and
        # protocols are written under the run directory, built once by the driver and read by every trial
        config_dict["data_path"] = os.path.abspath(keys.get("data_path") or "dataset/")
        config_dict["domain_cache_dir"] = os.path.join(run_dir, "domains")
        config_dict["protocol_dir"] = os.path.join(run_dir, "protocols")
        config_dict["data_seed"] = request.data_seed  # every trial: the same data; only its training seed differs
        if keys["source_checkpoint"]:
            config_dict["source_checkpoint"] = os.path.abspath(keys["source_checkpoint"])
        if space.metric:
            config_dict["valid_metric"] = space.metric
        return cls(method=method.name, model=request.model, source=request.source, targets=list(request.targets),
                   config_files=list(request.config_files), config_dict=config_dict, space_path=space.path,
                   space_text=space.text, num_samples=space.num_samples,
                   default_transfer=keys["transfer"] if method.strategy is not None else None, run_dir=run_dir,
                   seed=request.seed)

    # ----- the run directory ---------------------------------------------------------------------------------
    @classmethod
    def load(cls, run_dir):
        path = os.path.join(run_dir, STATE_FILE)
        if not os.path.isfile(path):
            raise TransferConfigError(f"resume={run_dir!r}: no {STATE_FILE} there (not a recbole_transfer search directory)")
        with open(path, "r", encoding="utf-8") as f:
            data = json.load(f)
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self):
        with open(os.path.join(self.run_dir, STATE_FILE), "w", encoding="utf-8") as f:
            json.dump(dataclasses.asdict(self), f, indent=1, default=str)

    def space(self, method):
        space = SearchSpace(yaml.load(self.space_text, Loader=yaml.FullLoader), self.space_path, method)
        space.num_samples = self.num_samples
        space.model = self.model
        return space

    # ----- requests ------------------------------------------------------------------------------------------
    def request(self, target=None, **extra):
        """The request of ``target`` (every target: None) under the search's keys, the trials' thread count and the
        prepared source checkpoint, with ``extra`` keys over them."""
        keys = {**self.config_dict, "num_threads": self.num_threads}
        if self.source_checkpoint:
            keys["source_checkpoint"] = self.source_checkpoint
        targets = [target] if target is not None else self.targets
        return Request(self.model, self.source, targets, self.config_files, {**keys, **extra})

    def trial_request(self, method, target, params):
        """The request of one trial: the trial's keys and its training seed."""
        params = params_of(params)
        return self.request(target, **params, seed=trial_seed(self.seed, params, method))
