r"""Periodic retraining evaluated online: SML (seed 002) against its baselines.

A dataset with timestamps is cut into periods D_0..D_{T-1} (``periods``, ``period_by``). Every method
runs the same loop; for t = 0..T-1:

1. if t >= 1, the model served after period t-1 is TESTED on D_t (nothing of D_t has been trained on);
2. the method updates its model with D_t (skipped after the last period).

What is tested on D_t: the users of D_t, each with her D_t items that were seen in some period before t
(interactions on never-seen items cannot be ranked and are excluded, for every method alike, and
counted); full ranking over the items seen before t, with the user's own earlier items masked. Metrics
are RecBole's Recall@K and NDCG@K, averaged over users, then over periods: periods 1..T-1-test_periods
validate, the last ``test_periods`` test. "Warm" metrics keep only users seen before t.

Methods (``retrain_methods``), all starting from the same seeded initialiser:

- ``pop``: items ranked by their count in D_0..D_t;
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
"""

import contextlib
import logging
import os
import time

import numpy as np
import torch
from recbole.data import create_dataset
from recbole.data.dataloader import TrainDataLoader
from recbole.data.interaction import Interaction
from recbole.evaluator.metrics import NDCG, Recall
from recbole.sampler import Sampler
from recbole.utils import init_seed

from ...config import TransferConfig, get_model
from ...data.periods import dataset_periods
from ...errors import TransferConfigError, TransferDataError, did_you_mean
from ...pipeline.base import Runner, SearchTarget
from ...pipeline.two_stage import domain_config
from ...report import markdown, mean_std
from ...trainer import TransferTrainer
from ...utils import listish, set_threads, stable_hash
from .model import build_base

logger = logging.getLogger(__name__)

RETRAIN_METHODS = ("pop", "full", "finetune", "sample", "sml")
METHOD_LABELS = {"pop": "Popularity", "full": "Full-retrain", "finetune": "Fine-tune", "sample": "Sample-based", "sml": "SML"}


class SeenItemSampler(Sampler):
    """RecBole's training sampler, drawing negatives uniformly among ``candidates`` (the items seen so far)."""

    def __init__(self, dataset, candidates):
        self.candidates = np.asarray(candidates, dtype=np.int64)
        super().__init__(["train"], [dataset])
        most = max((len(s) for s in self.used_ids["train"]), default=0)
        if most >= self.candidates.size:
            raise TransferDataError(
                f"a user has interacted with all {self.candidates.size} items seen so far: no negative can be drawn "
                f"for her (use fewer, longer periods)"
            )

    def _uni_sampling(self, sample_num):
        return self.candidates[np.random.randint(0, self.candidates.size, sample_num)]


@contextlib.contextmanager
def overridden(config, values):
    """Set config keys for a block (RecBole's loaders and trainer read them when built)."""
    old = {k: config[k] for k in values}
    for k, v in values.items():
        config[k] = v
    try:
        yield config
    finally:
        for k, v in old.items():
            config[k] = v


class PeriodicData:
    """A RecBole dataset cut into periods: training sets, seen ids and the online test set of a period."""

    def __init__(self, config, dataset):
        if not isinstance(dataset.inter_feat, Interaction):
            dataset._change_feat_format()
        self.config, self.dataset = config, dataset
        self.period = dataset_periods(dataset, config["periods"], config["period_by"])
        self.n_periods = int(config["periods"])
        feat = dataset.inter_feat
        self.users = feat[dataset.uid_field].numpy()
        self.items = feat[dataset.iid_field].numpy()
        self.rows = [np.flatnonzero(self.period == t) for t in range(self.n_periods)]
        self.n_users, self.n_items = dataset.user_num, dataset.item_num
        self.user_first = self._first_period(self.users, self.n_users)
        self.item_first = self._first_period(self.items, self.n_items)
        self._test_sets = {}

    def _first_period(self, ids, n):
        first = np.full(n, self.n_periods, dtype=np.int64)  # padding id 0 is never seen
        np.minimum.at(first, ids, self.period)
        return first

    def seen_users(self, t):
        return self.user_first <= t

    def seen_items(self, t):
        return self.item_first <= t

    def fingerprint(self):
        """Hash of the periods (every interaction's user, item and period): equal = the same online protocol."""
        return stable_hash([stable_hash(self.users.tolist()), stable_hash(self.items.tolist()), stable_hash(self.period.tolist())])

    def subset(self, rows):
        return self.dataset.copy(self.dataset.inter_feat[torch.as_tensor(np.sort(rows))])

    def test_set(self, t):
        """Users of D_t, their positives among items seen before t, and the pairs to mask (earlier items).
        Computed once per period: every method is tested on the same set."""
        if t not in self._test_sets:
            self._test_sets[t] = self._test_set(t)
        return self._test_sets[t]

    def _test_set(self, t):
        rows = self.rows[t]
        known = self.seen_items(t - 1)[self.items[rows]]
        rows_kept = rows[known]
        pos_keys = np.unique(self.users[rows_kept] * self.n_items + self.items[rows_kept])
        users = np.unique(pos_keys // self.n_items)
        before = np.concatenate(self.rows[:t])
        before = before[np.isin(self.users[before], users)]
        history = np.setdiff1d(self.users[before] * self.n_items + self.items[before], pos_keys)
        return {
            "users": users, "pos_keys": pos_keys, "history_keys": history, "excluded": int((~known).sum()),
            "warm": self.seen_users(t - 1)[users], "candidates": self.seen_items(t - 1),
        }


PERIOD_METRICS = ("recall", "ndcg")  # what evaluate_period computes, at every K of ``topk``


def evaluate_period(scorer, data, t, config, batch_users=512):
    """Online test of a served model on D_t: RecBole's Recall@K and NDCG@K (all users and warm users)."""
    test = data.test_set(t)
    topk = list(config["topk"])
    users, n_items, kmax = test["users"], data.n_items, max(topk)
    hits, pos_len = [], []
    for start in range(0, len(users), batch_users):
        chunk = users[start:start + batch_users]
        with torch.no_grad():
            scores = scorer(torch.as_tensor(chunk)).view(len(chunk), n_items).clone()
        scores[:, torch.as_tensor(~test["candidates"])] = -np.inf
        keys = test["history_keys"][np.isin(test["history_keys"] // n_items, chunk)]
        scores[torch.as_tensor(np.searchsorted(chunk, keys // n_items)), torch.as_tensor(keys % n_items)] = -np.inf
        top = torch.topk(scores, kmax, dim=1).indices.numpy()
        hits.append(np.isin(chunk[:, None] * n_items + top, test["pos_keys"]))
        pos_users = test["pos_keys"] // n_items  # users are sorted: a chunk's row is its index in the chunk
        pos_len.append(np.bincount(np.searchsorted(chunk, pos_users[np.isin(pos_users, chunk)]), minlength=len(chunk)))
    hits, pos_len = np.concatenate(hits), np.concatenate(pos_len)
    per_user = dict(zip(PERIOD_METRICS, (Recall(config).metric_info(hits, pos_len), NDCG(config).metric_info(hits, pos_len))))
    out = {"period": t, "users": int(len(users)), "warm_users": int(test["warm"].sum()), "excluded": test["excluded"]}
    for name, values in per_user.items():
        for k in topk:
            out[f"{name}@{k}"] = float(values[:, k - 1].mean())
            out[f"warm_{name}@{k}"] = float(values[test["warm"], k - 1].mean()) if test["warm"].any() else float("nan")
    return out


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


def run_periodic(config, methods=None, progress=None, observer=None, last_period=None, on_result=None, on_data=None):
    """Run each method over the periods; returns one row per (method, tested period).

    ``last_period``: stop after testing this period (``--tune`` stops before the test periods).
    ``on_result(row)`` runs after each tested period (``--tune`` reports validation periods to Ray).
    ``observer(event, t, dataset, method)`` sees every training set handed to a trainer (``'train'``, the
    period it belongs to) and every test (``'test'``, the tested period): the no-leak test uses it.
    """
    methods = list(methods or check_periodic_config(config))
    set_threads(config["num_threads"])
    init_seed(config["seed"], config["reproducibility"])
    data = PeriodicData(config, create_dataset(config))
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
                result = evaluate_period(method.scores, data, t, config)
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


def _methods_in(rows):
    """Methods of ``rows`` in table order: the built-in ones first, then variants (e.g. an ablation's rows)."""
    names = list(dict.fromkeys(r["method"] for r in rows))
    return [m for m in RETRAIN_METHODS if m in names] + [m for m in names if m not in RETRAIN_METHODS]


def _label(method):
    return METHOD_LABELS.get(method, method)


def table_metrics(rows):
    """Table 1's columns: each metric at every K the rows hold, then the warm-user metrics at the largest K."""
    ks = sorted(int(key.split("@")[1]) for key in rows[0] if key.startswith(f"{PERIOD_METRICS[0]}@"))
    return [f"{m}@{k}" for m in PERIOD_METRICS for k in ks] + [f"warm_{m}@{ks[-1]}" for m in PERIOD_METRICS]


def summarise(rows, phase="test"):
    """{method: {metric: [value per seed]}}: each seed's metrics averaged over its ``phase`` periods."""
    by = {}
    for r in rows:
        if r["phase"] == phase:
            by.setdefault(r["method"], {}).setdefault(r.get("seed"), []).append(r)
    out, keys = {}, table_metrics(rows) + ["train_seconds"]
    for method, seeds in by.items():
        per_seed = {k: [np.nanmean([r[k] for r in rs]) for rs in seeds.values()] for k in keys}
        out[method] = {k: [float(x) for x in v] for k, v in per_seed.items()}  # one value per seed
    return out


def table1(rows, phase="test"):
    """The paper's Table 1 shape: one row per method, metrics averaged over the test periods (± std over seeds)."""
    summary, metrics = summarise(rows, phase), table_metrics(rows)
    head = ["method"] + [m.replace("warm_", "warm ") for m in metrics] + ["train s / period"]
    lines = []
    for method in [m for m in _methods_in(rows) if m in summary]:
        cells = [_label(method)]
        for key in metrics + ["train_seconds"]:
            cells.append(mean_std(summary[method][key], "{:.1f}" if key == "train_seconds" else "{:.4f}", std_when_one=False))
        lines.append(cells)
    return markdown(head, lines)


def period_table_of(rows, metric="ndcg@20"):
    """Per-period ``metric`` of every method (mean over seeds), with the period's users and warm users."""
    periods = sorted({r["period"] for r in rows})
    methods = _methods_in(rows)
    head = ["period", "phase", "users (warm)", "excluded"] + [_label(m) for m in methods]
    lines = []
    for p in periods:
        at = [r for r in rows if r["period"] == p]
        first = at[0]
        cells = [str(p), first["phase"], f"{first['users']} ({first['warm_users']})", str(first["excluded"])]
        cells += [f"{np.mean([r[metric] for r in at if r['method'] == m]):.4f}" for m in methods]
        lines.append(cells)
    return f"{metric} per period\n\n" + markdown(head, lines)


def plot_curves(rows, path, metrics=("recall@20", "ndcg@20")):
    """Per-period curves of every method (mean over seeds; test periods shaded), written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6))
    test_periods = sorted({r["period"] for r in rows if r["phase"] == "test"})
    for ax, metric in zip(np.atleast_1d(axes), metrics):
        for m in _methods_in(rows):
            periods = sorted({r["period"] for r in rows if r["method"] == m})
            values = [np.mean([r[metric] for r in rows if r["method"] == m and r["period"] == p]) for p in periods]
            ax.plot(periods, values, marker="o", label=_label(m))
        if test_periods:
            ax.axvspan(test_periods[0] - 0.5, test_periods[-1] + 0.5, color="0.92", zorder=0)
        ax.set_xlabel("tested period t (model after t-1)")
        ax.set_ylabel(metric)
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


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
        return os.path.join("saved", "sml", f"{self._targets(request)[0]}-{time.strftime('%Y%m%d-%H%M%S')}")

    @staticmethod
    def _targets(request):
        targets = list(request.targets or TransferConfig(request.model, "ml-100k", request.config_files,
                                                         dict(request.config_dict or {}))["targets"] or [])
        if not targets:
            raise TransferConfigError("targets: no dataset given (--dataset=<name> or a 'targets:' list)")
        return targets

    def run(self, method, request, progress):
        rows = self.scenario(method, request, progress=progress)
        return rows, self.tables(method, rows)[0]

    def _config(self, request, target, extra=None):
        return domain_config(request.model, target, request.config_files, {**dict(request.config_dict or {}), **(extra or {})})

    def scenario(self, method, request, arms=None, seeds=None, progress=None, verbose=False):
        targets = self._targets(request)
        extra = {"retrain_methods": list(arms)} if arms else {}
        configs = [self._config(request, t, extra) for t in targets]
        for config in configs:
            check_periodic_config(config)  # before any dataset is read
        rows = []
        for target, config in zip(targets, configs):
            for seed in seeds or [config["seed"]]:
                seeded = self._config(request, target, {**extra, "seed": seed})
                if progress:
                    progress(f"recbole_transfer: periodic retraining of {seeded['sml_base']} on {seeded['dataset']}: "
                             f"{seeded['periods']} periods ({seeded['period_by']}), last {seeded['test_periods']} tested; "
                             f"methods {check_periodic_config(seeded)}; seed {seed}")
                for row in run_periodic(seeded, progress=progress):
                    rows.append({**row, "target": target, "model": request.model})
        return rows

    def tables(self, method, rows):
        return (f"Test periods (online: the model after period t-1 is tested on period t)\n\n{table1(rows)}\n\n"
                f"{period_table_of(rows)}"), None

    def plot(self, method, rows, path, plotted=None):
        plot_curves(rows, path)

    # ----- Ray Tune -------------------------------------------------------------------------------
    def check_search(self, method, state, target, trials):
        config = domain_config(state["model"], target, state["config_files"],
                               {**state["config_dict"], "num_threads": state["num_threads"]})
        check_periodic_config(config)
        n_valid = config["periods"] - config["test_periods"] - 1
        if n_valid < 1:
            raise TransferConfigError(
                f"test_periods={config['test_periods']}: --tune needs a validation period (periods - test_periods >= 2)"
            )
        for params in trials:
            check_periodic_config(domain_config(state["model"], target, state["config_files"], {**state["config_dict"], **params}))
        set_threads(config["num_threads"])
        data = PeriodicData(config, create_dataset(config))
        return SearchTarget(config, data.fingerprint(), n_valid, n_valid)

    def trial(self, method, setup, params, report):
        config = domain_config(setup["model"], setup["target"], setup["config_files"],
                               {**setup["config_dict"], "retrain_methods": ["sml"]})
        metric = str(config["valid_metric"]).lower()
        scores, fingerprint = [], {}

        def on_result(row):
            scores.append(row[metric])
            report({f"valid_{metric}": float(np.mean(scores)), "period": len(scores),
                    "recbole_done": len(scores) == setup["max_t"], "fingerprint": fingerprint.get("value"),
                    "model_file": None})

        run_periodic(config, on_result=on_result, last_period=setup["max_t"],
                     on_data=lambda data: fingerprint.update(value=data.fingerprint()))

    def trial_score(self, frame, metric, max_t):
        """The mean validation metric over every validation period; None for a trial stopped before the last."""
        reports = int(frame[self.time_attr].iloc[-1])
        return (float(frame[metric].iloc[-1]) if reports == max_t else None), reports, reports

    def finish_search(self, method, state, target, best, metric):
        return {"test_result": {}, "keys": {}}

    def after_search(self, method, request, outcomes, progress):
        """Every method of ``retrain_methods``, over all periods, with each target's winning keys."""
        parts = []
        for out in outcomes:
            if not out["best"]:
                continue
            params = {k: v for k, v in out["best"]["config"].items() if k != "branch"}
            winner = type(request)(request.model, request.source, [out["target"]], request.config_files,
                                   {**request.config_dict, **params})
            rows = self.scenario(method, winner, progress=progress)
            parts.append(f"{out['target']}, every method with the winner's keys ({out['best']['label']}) and the search's "
                         f"seed (every trial's seed too):\n\n"
                         + self.tables(method, rows)[0])
        return "\n\n".join(parts)
