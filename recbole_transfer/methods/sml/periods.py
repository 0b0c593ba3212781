r"""The periods of a dataset and their online evaluation: the data every retraining method shares (SML, seed 002).

A dataset with timestamps is cut into periods D_0..D_{T-1} (``periods``, ``period_by``). :class:`PeriodicData`
holds, per period, its interactions, the users and items seen up to it, the training set of any rows (a RecBole
``Dataset.copy``) and its online test set; :class:`SeenItemSampler` is RecBole's training sampler drawing
negatives among the items seen so far.

:func:`evaluate_period` is the online test: the model served after period t-1 is TESTED on D_t (nothing of D_t
has been trained on). What is tested on D_t: the users of D_t, each with her D_t items that were seen in some
period before t (interactions on never-seen items cannot be ranked and are excluded, for every method alike, and
counted); full ranking over the items seen before t, with the user's own earlier items masked. Metrics are
RecBole's Recall@K and NDCG@K, averaged over users, then over periods: periods 1..T-1-test_periods validate, the
last ``test_periods`` test. "Warm" metrics keep only users seen before t.
"""

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.evaluator.metrics import NDCG, Recall
from recbole.sampler import Sampler

from ...data.periods import dataset_periods
from ...errors import TransferDataError
from ...utils import stable_hash


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
        """Hash of the periods (every interaction's user, item and period) and of which periods are tested and how
        (``test_periods``, ``topk``, ``valid_metric``): equal = the same online protocol."""
        protocol = [int(self.config["test_periods"]), list(self.config["topk"]), str(self.config["valid_metric"]).lower()]
        return stable_hash([stable_hash(self.users.tolist()), stable_hash(self.items.tolist()), stable_hash(self.period.tolist()),
                            protocol])

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


def evaluate_period(scorer, data, t, config, batch_users=512, per_user=False):
    """Online test of a served model on D_t: RecBole's Recall@K and NDCG@K (all users and warm users).
    ``per_user``: the row also holds ``per_user`` ({metric@K: each tested user's value}) and ``user_ids``."""
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
    by_metric = dict(zip(PERIOD_METRICS, (Recall(config).metric_info(hits, pos_len), NDCG(config).metric_info(hits, pos_len))))
    out = {"period": t, "users": int(len(users)), "warm_users": int(test["warm"].sum()), "excluded": test["excluded"]}
    for name, values in by_metric.items():
        for k in topk:
            out[f"{name}@{k}"] = float(values[:, k - 1].mean())
            out[f"warm_{name}@{k}"] = float(values[test["warm"], k - 1].mean()) if test["warm"].any() else float("nan")
    if per_user:
        out["user_ids"] = np.asarray(users, dtype=np.int64)
        out["per_user"] = {f"{name}@{k}": np.asarray(values[:, k - 1], dtype=np.float64)
                           for name, values in by_metric.items() for k in topk}
    return out
