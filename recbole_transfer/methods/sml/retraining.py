r"""Periodic retraining: SML (seed 002) and its baselines, each updated period after period and tested online.

Every method runs the same loop (:func:`run_periodic`); for t = 0..T-1:

1. if t >= 1, the model served after period t-1 is TESTED on D_t (nothing of D_t has been trained on;
   :func:`~recbole_transfer.methods.sml.periods.evaluate_period`);
2. the method updates its model with D_t (skipped after the last period).

Methods (``retrain_methods``), all starting from the same seeded initialiser:

- ``pop``: items ranked by their count in D_0..D_t;
- ``ease`` / ``itemknn`` / ``slim``: RecBole's EASE (``ease_reg_weight``), ItemKNN (``knn_k``, ``knn_shrink``) or
  SLIMElastic (``slim_alpha``, ``slim_l1_ratio``) rebuilt on D_0..D_t (what full retraining sees); built in closed form, not trained;
- ``full``: the base model (``sml_base``) trained on D_0..D_t, warm-started from the previous model;
- ``finetune``: the previous model trained on D_t only;
- ``sample``: the previous model trained on D_t plus a uniform reservoir of earlier interactions
  (Algorithm R, ``reservoir_size``; the paper's SPMF also weights its samples, which is not done here);
- ``sml``: Algorithm 2. When D_t arrives and W_{t-1} has been tested on it, ``sml_rounds`` times: Step 2
  (Θ on D_t through f_Θ(W_{t-2}, Ŵ_{t-1}), Ŵ fixed) then Step 1 (Ŵ_{t-1} on D_{t-1}, Θ fixed); W_{t-1}
  is recomputed; then Ŵ_t <- W_{t-1} is learnt on D_t through f_Θ(W_{t-1}, ·) and W_t = f_Θ(W_{t-1}, Ŵ_t).
  Run from t = 0 (W_{-1}: the initialiser), this loop performs Algorithm 1 on the early periods.

Training uses RecBole's pieces: each training set is a ``Dataset.copy`` of the chosen interactions, with
RecBole's ``TrainDataLoader`` and a ``Sampler`` drawing negatives among the items seen so far, and a
:class:`TransferTrainer` (Adam over the trainable parameters, fixed epochs per period: there is no
validation split inside a period).

This module holds the methods' names and labels, one retrainer per method (:func:`make_retrainer`), the
pieces they share (:class:`PeriodicRun`), the config check and the loop.
"""

import contextlib
import logging
import os
import time

import numpy as np
import torch
from recbole.data.dataloader import TrainDataLoader
from recbole.data.interaction import Interaction
from recbole.utils import init_seed

from ...config import get_model
from ...errors import TransferConfigError
from ...keys import read_yaml, recbole_model_defaults
from ...pipeline.two_stage import read_dataset
from ...trainer import TransferTrainer
from ...utils import listish, set_threads
from .model import build_base
from .periods import PeriodicData, SeenItemSampler, evaluate_period

logger = logging.getLogger(__name__)

RETRAIN_METHODS = ("pop", "ease", "itemknn", "slim", "full", "finetune", "sample", "sml")
METHOD_LABELS = {"pop": "Popularity", "ease": "EASE", "itemknn": "ItemKNN", "slim": "SLIM",
                 "full": "Full-retrain", "finetune": "Fine-tune",
                 "sample": "Sample-based", "sml": "SML"}
# the keys each method reads beyond the periods (a leaderboard arm may tune only these)
BASE_KEYS = frozenset({"sml_base", "embedding_size", "learning_rate", "train_batch_size", "epochs", "weight_decay",
                       "learner", "clip_grad_norm"})
SML_KEYS = frozenset(k for k in read_yaml(os.path.join(os.path.dirname(__file__), "keys.yaml"))
                     if k.startswith("sml_"))  # SML's own keys, as its keys.yaml declares them
METHOD_READS = {"pop": frozenset(), "ease": frozenset({"ease_reg_weight"}), "itemknn": frozenset({"knn_k", "knn_shrink"}),
                "slim": frozenset({"slim_alpha", "slim_l1_ratio"}),
                "full": BASE_KEYS, "finetune": BASE_KEYS, "sample": BASE_KEYS | {"reservoir_size"}, "sml": BASE_KEYS | SML_KEYS}
# the closed-form methods: their RecBole model and its keys, each read from an SML key (the model's other keys: its
# RecBole defaults, e.g. ItemKNN's knn_method, SLIMElastic's positive_only)
CLOSED_FORM = {"ease": ("EASE", {"reg_weight": "ease_reg_weight"}),
               "itemknn": ("ItemKNN", {"k": "knn_k", "shrink": "knn_shrink"}),
               "slim": ("SLIMElastic", {"alpha": "slim_alpha", "l1_ratio": "slim_l1_ratio"})}


@contextlib.contextmanager
def overridden(config, values):
    """Set config keys for a block (RecBole's loaders and trainer read them when built); afterwards each key is as
    it was, absent if it was."""
    old = {k: config[k] for k in values if k in config}
    for k, v in values.items():
        config[k] = v
    try:
        yield config
    finally:
        for k in values:
            if k in old:
                config[k] = old[k]
            else:
                config.final_config_dict.pop(k, None)


class _Retrainer:
    """One method: ``update(t)`` trains on what period t adds; ``scores(users)`` serves ``self.model``."""

    def __init__(self, run):
        self.run = run

    def scores(self, users):
        return self.model.full_sort_predict(Interaction({self.model.USER_ID: users}))


class PopularityRetrain(_Retrainer):
    def __init__(self, run):
        super().__init__(run)
        self.counts = torch.zeros(run.data.n_items)

    def update(self, t):
        dataset = self.run.data.subset(self.run.data.rows[t])
        self.run.observe("train", t, dataset)
        items = dataset.inter_feat[dataset.iid_field]
        self.counts += torch.bincount(items, minlength=self.counts.numel()).float()

    def scores(self, users):
        return self.counts.expand(len(users), -1)


class ClosedFormRetrain(_Retrainer):
    """ease / itemknn / slim: RecBole's model rebuilt on every interaction so far (D_0..D_t), as full retraining sees."""

    def __init__(self, run, kind):
        super().__init__(run)
        self.name, self.keys = CLOSED_FORM[kind]
        self.fixed = {k: v for k, v in recbole_model_defaults(self.name).items() if k not in self.keys}

    def update(self, t):
        dataset = self.run.data.subset(np.concatenate(self.run.data.rows[:t + 1]))
        self.run.observe("train", t, dataset)
        config = self.run.config
        with overridden(config, {**self.fixed, **{key: config[ours] for key, ours in self.keys.items()}}):
            self.model = get_model(self.name)(config, dataset)


class BaseRetrain(_Retrainer):
    """full / finetune / sample: the base model, warm-started, trained on the method's rows each period."""

    def __init__(self, run, kind):
        super().__init__(run)
        self.kind = kind
        self.model = build_base(run.config, run.data.dataset)
        size = run.config["reservoir_size"]
        self.reservoir_size = int(size) if size else int(np.mean([len(r) for r in run.data.rows]))
        self.reservoir, self.offered = np.empty(0, dtype=np.int64), 0
        self.rng = np.random.default_rng(run.config["seed"])

    def update(self, t):
        rows = self.run.data.rows
        train_rows = {
            "finetune": rows[t], "full": np.concatenate(rows[:t + 1]), "sample": np.concatenate([rows[t], self.reservoir]),
        }[self.kind]
        self.run.fit(self.model, train_rows, self.run.data.seen_items(t), t)
        if self.kind == "sample":
            self._offer(rows[t])

    def _offer(self, new_rows):
        """Algorithm R: after it, the reservoir is a uniform sample of every interaction offered so far."""
        room = self.reservoir_size - self.reservoir.size
        self.reservoir = np.concatenate([self.reservoir, new_rows[:room]])  # filling: every row is kept
        self.offered += min(room, len(new_rows))
        for row in new_rows[room:]:
            self.offered += 1
            slot = self.rng.integers(0, self.offered)
            if slot < self.reservoir_size:
                self.reservoir[slot] = row


class SMLRetrain(_Retrainer):
    """Algorithm 2 (and Algorithm 1 on the early periods); see the module docstring."""

    def __init__(self, run):
        super().__init__(run)
        self.model = get_model("SML")(run.config, run.data.dataset)
        config = run.config
        self.step2 = {"learning_rate": config["sml_lr"], "train_batch_size": config["sml_batch_size"],
                      "weight_decay": config["sml_weight_decay"], "epochs": config["sml_epochs"]}

    def update(self, t):
        data, model = self.run.data, self.model
        if t >= 1 and self.run.config["sml_rounds"]:
            # Step 2 sees D_t as W_{t-1} served it: only interactions on items seen before t
            known = data.rows[t][data.seen_items(t - 1)[data.items[data.rows[t]]]]
            for _ in range(self.run.config["sml_rounds"]):
                model.set_step("theta")
                self.run.fit(model, known, data.seen_items(t - 1), t, self.step2)
                model.set_step("hat")
                self.run.fit(model, data.rows[t - 1], data.seen_items(t - 1), t - 1)
            model.commit()
        model.advance(data.seen_users(t), data.seen_items(t))
        model.set_step("hat" if t >= 1 else "direct")  # Ŵ_0 is the base model trained on D_0
        self.run.fit(model, data.rows[t], data.seen_items(t), t)
        model.commit()
        if t == 0 and self.run.config["sml_theta_init"] == "identity":
            model.advance(data.seen_users(t), data.seen_items(t))  # the pair (W_0, W_0): f_Θ must return Ŵ
            logger.info("Θ fitted to the identity on ŵ: squared error %.5f", model.init_transfer_identity())


class PeriodicRun:
    """The shared pieces of every method: config, periods, the training call and the observer."""

    def __init__(self, config, data, method, observer=None):
        self.config, self.data, self.method, self.observer = config, data, method, observer

    def observe(self, event, t, dataset=None):
        if self.observer is not None:
            self.observer(event, t, dataset, self.method)

    def fit(self, model, rows, candidates, t, values=None):
        """Train ``model`` on interactions ``rows`` with RecBole's loader, sampler and a TransferTrainer."""
        dataset = self.data.subset(rows)
        self.observe("train", t, dataset)
        with overridden(self.config, values or {}):
            sampler = SeenItemSampler(dataset, np.flatnonzero(candidates)).set_phase("train")
            loader = TrainDataLoader(self.config, dataset, sampler, shuffle=True)
            trainer = TransferTrainer(self.config, model, stage=f"period{t}")
            try:
                trainer.fit(loader, None, verbose=False, saved=False, show_progress=False)
            finally:
                trainer.tensorboard.close()  # RecBole opens a SummaryWriter (a thread) per trainer


def make_retrainer(name, run):
    if name == "pop":
        return PopularityRetrain(run)
    if name == "sml":
        return SMLRetrain(run)
    if name in CLOSED_FORM:
        return ClosedFormRetrain(run, name)
    return BaseRetrain(run, name)


def check_periodic_config(config):
    """What the keys' annotations cannot say (each key's type and range is checked with the config): the methods and
    the test periods against the periods. Returns the methods."""
    methods = listish(config["retrain_methods"]) or []
    if not methods:
        raise TransferConfigError(f"retrain_methods={config['retrain_methods']!r}: no method; allowed: {', '.join(RETRAIN_METHODS)}")
    if config["test_periods"] > config["periods"] - 1:
        raise TransferConfigError(f"test_periods={config['test_periods']!r}: must be at most periods - 1 = "
                                  f"{config['periods'] - 1} (a period trains, the online periods before the test validate)")
    return methods


def run_periodic(config, methods=None, progress=None, observer=None, last_period=None, on_result=None, on_data=None,
                 per_user=False):
    """Run each method over the periods; returns one row per (method, tested period).

    ``per_user``: each row also holds its users' values (:func:`~.periods.evaluate_period`).
    ``last_period``: stop after testing this period (``--tune`` stops before the test periods).
    ``on_result(row)`` runs after each tested period (``--tune`` reports validation periods to Ray).
    ``observer(event, t, dataset, method)`` sees every training set handed to a trainer (``'train'``, the
    period it belongs to) and every test (``'test'``, the tested period): the no-leak test uses it.
    """
    methods = list(methods or check_periodic_config(config))
    set_threads(config["num_threads"])
    init_seed(config["seed"], config["reproducibility"])
    data = PeriodicData(config, read_dataset(config))
    if on_data is not None:
        on_data(data)
    build_base(config, data.dataset)  # a base that cannot serve fails before any method trains
    n = data.n_periods
    last = n - 1 if last_period is None else int(last_period)
    first_test = n - config["test_periods"]
    rows = []
    for name in methods:
        init_seed(config["seed"], config["reproducibility"])  # every method from the same initialiser
        run = PeriodicRun(config, data, name, observer)
        method = make_retrainer(name, run)
        seconds, k = 0.0, max(config["topk"])
        for t in range(last + 1):
            if t >= 1:
                run.observe("test", t)
                result = evaluate_period(method.scores, data, t, config, per_user=per_user)
                result.update(method=name, phase="test" if t >= first_test else "valid", train_seconds=seconds,
                              seed=config["seed"])
                rows.append(result)
                if on_result is not None:
                    on_result(result)
                if progress:
                    progress(f"{METHOD_LABELS[name]:>12} period {t}/{n - 1} ({result['phase']}): "
                             f"recall@{k} {result[f'recall@{k}']:.4f} ndcg@{k} {result[f'ndcg@{k}']:.4f} users {result['users']} "
                             f"(warm {result['warm_users']}), trained {seconds:.1f}s")
            if t < last:
                start = time.time()
                method.update(t)
                seconds = time.time() - start
    return rows
