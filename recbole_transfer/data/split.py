"""A protocol's split: which rows of a domain train, validate and test (and which training rows a thinned domain
keeps). RecBole's own ``build()`` for ``eval_args`` splits, seeded as ``run_recbole`` seeds it (with the data seed);
users instead of interactions for ``user_holdout`` or a cold-start protocol's user parts; thinning of training rows
(``keep_fraction``) and users (``label_fraction``) under generators keyed by the content and the data seed."""

import copy
import hashlib
import json

import numpy as np
import torch
from recbole.data.interaction import Interaction

from ..errors import TransferConfigError, TransferDataError
from ..utils import fixed_rng

PHASES = ("train", "valid", "test")


def digest(*parts):
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.dtype).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"|")
    return h.hexdigest()


def keyed_rng(key, purpose):
    """A numpy generator keyed by the protocol key and what it draws (split, thinning, candidates)."""
    return np.random.default_rng(int(digest(key, purpose)[:15], 16))


def split_rows(dataset, config, key, args):
    """{'train_full', 'train', 'valid', 'test'}: row indices of each part ('train' after thinning)."""
    feat = dataset.inter_feat
    users = feat[dataset.uid_field].numpy()
    if args.get("user_parts") is not None:
        groups = np.zeros(len(users), dtype=np.int64)  # 0 train, 1 valid, 2 test, 3 dropped
        for code, part in ((1, "valid"), (2, "test"), (3, "drop")):
            groups[np.isin(users, np.asarray(args["user_parts"][part], dtype=np.int64))] = code
        parts = [np.flatnonzero(groups == code) for code in (0, 1, 2)]
    elif args["user_holdout"] is not None:
        if args["benchmark"] is not None:
            raise TransferConfigError("user_holdout: the dataset already comes split in benchmark files")
        parts = _holdout(dataset, users, args["user_holdout"], key)
    else:
        parts = _recbole_split(dataset, args)
    if len(parts) != 3:
        raise TransferConfigError(f"eval_args.split={args['split']!r}: needs a train, a valid and a test part")
    rows = {"train_full": parts[0], "valid": parts[1], "test": parts[2]}
    train = parts[0]
    if args["user_holdout"] is not None and args["user_holdout"]["label_fraction"] < 1:
        holdout = args["user_holdout"]
        train = _thin_users(users, train, holdout["label_fraction"], key, feat[dataset.iid_field].numpy(), holdout["stratify"])
    if args["keep_fraction"] < 1:
        train = _thin_rows(users, train, args["keep_fraction"], key)
    rows["train"] = train
    for name in PHASES:
        if len(rows[name]) == 0:
            raise TransferDataError(
                f"dataset {config['dataset']!r}: the {name} split is empty ({len(feat)} interactions, "
                f"eval_args.split={args['split']!r}); use a bigger domain or another split"
            )
    return rows


ROW = "__protocol_row__"  # the row index a split carries through RecBole's build()


def _recbole_split(dataset, args):
    """RecBole's own ``build()`` (order, group, split: RS, LS or TS, or the benchmark files), run on the user, time and
    row-index columns only, seeded as ``run_recbole`` seeds it (``init_seed`` with the data seed, then the dataset is
    built): the rows of each part, so that a run with ``data_seed`` equal to ``seed`` splits as plain RecBole does.
    The caller's random streams are left as they were."""
    feat = dataset.inter_feat
    columns = {f: feat[f] for f in (dataset.uid_field, dataset.time_field) if f and f in feat}
    columns[ROW] = torch.arange(len(feat))
    probe = copy.copy(dataset)
    probe.inter_feat = Interaction(columns)
    probe._change_feat_format = probe._drop_unused_col = lambda: None  # done on the dataset itself, once
    with fixed_rng(args["data_seed"]):
        parts = probe.build()
    return [part.inter_feat[ROW].numpy() for part in parts]


def _holdout(dataset, users, holdout, key):
    """Users into train / valid / test, stratified by label on a profile task (one row per user)."""
    items = dataset.inter_feat[dataset.iid_field].numpy()
    unique, first, counts = np.unique(users, return_index=True, return_counts=True)
    strata = items[first] if holdout["stratify"] and np.all(counts == 1) else np.zeros(len(unique), dtype=np.int64)
    rng = keyed_rng(key, "user_holdout")
    part_of = np.full(int(users.max()) + 1, -1)
    for stratum in np.unique(strata):
        members = unique[strata == stratum]
        members = members[rng.permutation(len(members))]
        n_test, n_valid = int(round(len(members) * holdout["test"])), int(round(len(members) * holdout["valid"]))
        part_of[members[:n_test]] = 2
        part_of[members[n_test:n_test + n_valid]] = 1
        part_of[members[n_test + n_valid:]] = 0
    parts = [np.flatnonzero(part_of[users] == p) for p in range(3)]
    for name, part in zip(PHASES, parts):
        if len(part) == 0:
            raise TransferDataError(
                f"user_holdout: the {name} part has no users ({len(unique)} users in all); raise its share or use a bigger domain"
            )
    return parts


def _thin_users(users, train, fraction, key, items, stratify):
    """Keep ``max(1, round(f m))`` of the m training users (of each label, when stratified: the low-label regime)."""
    unique, first, counts = np.unique(users[train], return_index=True, return_counts=True)
    labels = items[train][first] if stratify and np.all(counts == 1) else np.zeros(len(unique), dtype=np.int64)
    priority = keyed_rng(key, "label_fraction").random(int(users.max()) + 1)
    kept = []
    for label in np.unique(labels):
        members = unique[labels == label]
        quota = max(1, int(round(len(members) * fraction)))
        kept.extend(members[np.argsort(priority[members], kind="stable")[:quota]])
    return train[np.isin(users[train], np.asarray(kept))]


def _thin_rows(users, train, fraction, key):
    """Each training user keeps ``max(1, round(f n))`` of her n training rows: the rows with the lowest
    fixed random priority, so lower fractions keep subsets of higher ones."""
    priority = keyed_rng(key, "keep_fraction").random(len(users))[train]
    order = np.lexsort((priority, users[train]))  # by user, then priority
    sorted_users = users[train][order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, len(sorted_users)])
    rank = np.arange(len(sorted_users)) - np.repeat(starts, sizes)
    quota = np.maximum(1, np.round(sizes * fraction).astype(int))
    keep = np.zeros(len(train), dtype=bool)
    keep[order[rank < np.repeat(quota, sizes)]] = True
    return train[keep]
