"""A protocol's evaluation candidates: RecBole's phase sampler recorded once (:class:`RecordingSampler`), replayed
afterwards (:class:`FixedCandidates`), and RecBole's evaluation dataloaders drawing under the protocol's generator and,
with the cache, collating once (:func:`protocol_loader`). A sampled evaluation that replays stored candidates collates
a batch from arrays (:meth:`_ProtocolEval.collate_fn`), not user by user as RecBole's loader does: the same batches."""

import logging

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader
from recbole.data.interaction import Interaction

from ..errors import TransferDataError
from ..logs import progress
from ..utils import fixed_rng

logger = logging.getLogger(__name__)


def _occurrences(users, items):
    """Per (user, item) of the arrays, how many equal pairs come before it (a repeated positive gets its own draw: the
    key of a positive is (user, item, occurrence))."""
    pair = users.astype(np.int64) * (int(items.max(initial=0)) + 1) + items
    order = np.argsort(pair, kind="stable")
    ranked = pair[order]
    first = np.r_[True, ranked[1:] != ranked[:-1]] if len(ranked) else np.zeros(0, dtype=bool)
    starts = np.maximum.accumulate(np.where(first, np.arange(len(ranked)), 0))
    occurrence = np.empty(len(pair), dtype=np.int64)
    occurrence[order] = np.arange(len(ranked)) - starts
    return occurrence


class RecordingSampler:
    """RecBole's phase sampler, recording what it draws: (user, positive, occurrence) -> its negatives."""

    def __init__(self, sampler):
        self.sampler, self.phase, self.records = sampler, sampler.phase, {}

    def sample_by_user_ids(self, user_ids, item_ids, num):
        drawn = self.sampler.sample_by_user_ids(user_ids, item_ids, num)
        per_key = drawn.numpy().reshape(num, len(user_ids)).T  # RecBole's layout: the j-th draw of every key, then j+1
        users, items = np.asarray(user_ids), np.asarray(item_ids)
        keys = zip(users.tolist(), items.tolist(), _occurrences(users, items).tolist())
        for key, negatives in zip(keys, per_key):
            self.records[key] = negatives.copy()
        return drawn

    def arrays(self):
        keys = sorted(self.records)
        return np.array(keys, dtype=np.int64).reshape(-1, 3), np.stack([self.records[k] for k in keys]).astype(np.int64)


class FixedCandidates:
    """Stands in for RecBole's phase sampler in an evaluation dataloader: returns the protocol's recorded
    negatives of each (user, positive item, occurrence), in RecBole's layout."""

    def __init__(self, phase, keys, negatives):
        self.phase = phase
        keys = np.asarray(keys, dtype=np.int64).reshape(-1, 3)
        self._scale = (int(keys[:, 1].max(initial=0)) + 2, int(keys[:, 2].max(initial=0)) + 2)
        codes = self._code(keys[:, 0], keys[:, 1], keys[:, 2])
        self._order = np.argsort(codes, kind="stable")
        self._codes = codes[self._order]
        self.negatives = negatives

    def _code(self, users, items, occurrences):
        items, occurrences = np.minimum(items, self._scale[0] - 1), np.minimum(occurrences, self._scale[1] - 1)
        return (users.astype(np.int64) * self._scale[0] + items) * self._scale[1] + occurrences

    def rows(self, users, items, occurrences):
        """The stored rows of (user, positive item, occurrence) arrays; a key that was never drawn is an error."""
        codes = self._code(np.asarray(users), np.asarray(items), np.asarray(occurrences))
        at = np.minimum(np.searchsorted(self._codes, codes), max(len(self._codes) - 1, 0))
        if len(codes) and (not len(self._codes) or (self._codes[at] != codes).any()):
            raise TransferDataError("protocol: a positive without stored candidates (the protocol does not fit this data)")
        return self._order[at]

    def sample_by_user_ids(self, user_ids, item_ids, num):
        users, items = np.asarray(user_ids), np.asarray(item_ids)
        negatives = self.negatives[self.rows(users, items, _occurrences(users, items))]
        if negatives.shape[1] != num:
            raise TransferDataError(f"protocol: {negatives.shape[1]} recorded negatives per positive, {num} asked")
        return torch.as_tensor(negatives.T.reshape(-1), dtype=torch.long)


SCORE_BYTES = 16  # evaluation memory per (user, item) of a full-ranking batch: the score, the positives' matrix, masks
# (a model whose full_sort_predict costs more per pair declares ``eval_bytes_per_pair``)


class _ProtocolEval:
    """Mixin for RecBole's evaluation dataloaders: draws under the protocol's generator; with the cache,
    collates once and replays the batches."""

    def _init_batch_size_and_step(self):
        """Full ranking (not sequential): users per batch to fill ``eval_memory_mb`` at the model's
        ``eval_bytes_per_pair`` (default :data:`SCORE_BYTES`, for a ``full_sort_predict`` that scores every item at
        once), at least RecBole's ``eval_batch_size // items``. A model without its own ``full_sort_predict`` (RecBole
        then scores every user-item pair through ``predict``) and other loaders keep RecBole's sizes."""
        super()._init_batch_size_and_step()
        if not isinstance(self, FullSortEvalDataLoader) or self.is_sequential:
            return
        from recbole.model.abstract_recommender import AbstractRecommender

        from ..config import get_model

        model = get_model(self.config["model"])
        if getattr(model, "full_sort_predict", None) is AbstractRecommender.full_sort_predict:
            return
        items = self._dataset.item_num
        per_pair = float(getattr(model, "eval_bytes_per_pair", SCORE_BYTES))
        users = int(float(self.config["eval_memory_mb"]) * 2 ** 20 // (per_pair * items))
        if users > self.step:
            self.step = users
            self.set_batch_size(users * items)

    def setup_protocol(self, seed, keep):
        self.num_workers = 0  # candidates are drawn (or looked up) in this process
        self._protocol_seed, self._keep, self._batches = seed, keep, None
        args = getattr(self, "neg_sample_args", {}) or {}
        self._from_arrays = (isinstance(self, NegSampleEvalDataLoader) and isinstance(self._sampler, FixedCandidates)
                             and args.get("distribution", "none") != "none" and args.get("sample_num", "none") != "none"
                             and not args.get("dynamic", False) and self.config["transform"] is None)
        self._starts = None

    def collate_fn(self, index):
        """RecBole's sampled-evaluation batch (``NegSampleEvalDataLoader.collate_fn``: per user, her positives, then
        her candidates in the sampler's layout, labels 1 then 0; the batch row of each user, her positives) built from
        arrays when the candidates are stored: one gather, not a loop over users. Equal batches (tested)."""
        if not getattr(self, "_from_arrays", False):
            return super().collate_fn(index)
        if self._starts is None:  # each user's first row (RecBole keeps slices)
            self._starts = np.array([-1 if s is None else s.start for s in self.uid2index], dtype=np.int64)
        users = self.uid_list[np.asarray(index)]
        counts = self.uid2items_num[users].astype(np.int64)
        starts = self._starts[users]
        block = np.repeat(np.cumsum(counts) - counts, counts)
        positives = np.repeat(starts, counts) + np.arange(counts.sum()) - block  # dataset rows, user by user
        feat = self._dataset.inter_feat
        pos_users, pos_items = feat[self.uid_field][positives].numpy(), feat[self.iid_field][positives].numpy()
        stored = self._sampler.negatives[self._sampler.rows(pos_users, pos_items, _occurrences(pos_users, pos_items))]
        if stored.shape[1] != self.times - 1:
            raise TransferDataError(f"protocol: {stored.shape[1]} recorded negatives per positive, {self.times - 1} asked")
        # per user u with p positives: copy c of her p rows, c = 0 .. times - 1; copy 0 the positives, copy c >= 1 the
        # (c - 1)-th candidate of each positive
        user_of = np.repeat(np.arange(len(users)), counts)
        n, times = len(positives), self.times
        copy = np.repeat(np.arange(times), n)  # copy c of positive j sits at c * n + j before the reordering
        layout = np.lexsort((np.tile(np.arange(n), times), copy, np.tile(user_of, times)))  # by user, copy, positive
        rows = np.tile(positives, times)[layout]
        data = feat[torch.as_tensor(rows)]
        data[self.iid_field] = torch.as_tensor(np.concatenate([pos_items, stored.T.reshape(-1)])[layout],
                                               dtype=data[self.iid_field].dtype)
        data = self._dataset.join(data)
        data.update(Interaction({self.label_field: torch.as_tensor(copy[layout] == 0, dtype=torch.float32)}))
        idx_list = torch.as_tensor(np.repeat(np.arange(len(users)), counts * self.times), dtype=torch.long)
        positive_u = torch.as_tensor(user_of, dtype=torch.long)
        return data, idx_list, positive_u, feat[self.iid_field][positives]

    def __iter__(self):
        if self._batches is not None:
            return iter(self._batches)
        phase = getattr(self._sampler, "phase", None) or "evaluation"
        with fixed_rng(self._protocol_seed):  # a line every 10 s while the batches are collated (and candidates drawn)
            batches = list(progress(super().__iter__(), len(self), f"{self._dataset.dataset_name}: collating the {phase} "
                                    "batches", logger))
        if self._keep:
            self._batches = batches
        return iter(batches)


_LOADERS = {}


def protocol_loader(cls):
    """The protocol subclass of a RecBole evaluation dataloader class (same class for isinstance checks)."""
    if cls not in _LOADERS:
        _LOADERS[cls] = type(f"Protocol{cls.__name__}", (_ProtocolEval, cls), {})
    return _LOADERS[cls]
