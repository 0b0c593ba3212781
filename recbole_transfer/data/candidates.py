"""A protocol's evaluation candidates: RecBole's phase sampler recorded once (:class:`RecordingSampler`), replayed
afterwards (:class:`FixedCandidates`), and RecBole's evaluation dataloaders drawing under the protocol's generator and,
with the cache, collating once (:func:`protocol_loader`)."""

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader

from ..errors import TransferDataError
from ..utils import fixed_rng


def _keys(user_ids, item_ids):
    """(user, item, occurrence) per positive of one sampler call: a repeated positive gets its own draw."""
    seen, keys = {}, []
    for u, i in zip(np.asarray(user_ids).tolist(), np.asarray(item_ids).tolist()):
        seen[(u, i)] = seen.get((u, i), -1) + 1
        keys.append((u, i, seen[(u, i)]))
    return keys


class RecordingSampler:
    """RecBole's phase sampler, recording what it draws: (user, positive, occurrence) -> its negatives."""

    def __init__(self, sampler):
        self.sampler, self.phase, self.records = sampler, sampler.phase, {}

    def sample_by_user_ids(self, user_ids, item_ids, num):
        drawn = self.sampler.sample_by_user_ids(user_ids, item_ids, num)
        per_key = drawn.numpy().reshape(num, len(user_ids)).T  # RecBole's layout: the j-th draw of every key, then j+1
        for key, negatives in zip(_keys(user_ids, item_ids), per_key):
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
        self.lookup = {tuple(k): row for row, k in enumerate(keys.tolist())}
        self.negatives = negatives

    def sample_by_user_ids(self, user_ids, item_ids, num):
        rows = [self.lookup[key] for key in _keys(user_ids, item_ids)]
        negatives = self.negatives[rows]
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

    def __iter__(self):
        if self._batches is not None:
            return iter(self._batches)
        with fixed_rng(self._protocol_seed):
            batches = list(super().__iter__())
        if self._keep:
            self._batches = batches
        return iter(batches)


_LOADERS = {}


def protocol_loader(cls):
    """The protocol subclass of a RecBole evaluation dataloader class (same class for isinstance checks)."""
    if cls not in _LOADERS:
        _LOADERS[cls] = type(f"Protocol{cls.__name__}", (_ProtocolEval, cls), {})
    return _LOADERS[cls]
