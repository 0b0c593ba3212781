"""The evaluation protocol of a domain: one split and one set of evaluation candidates per (content, data_seed).

Every arm of a scenario, every trial of a search and every method of a benchmark that trains on the same
domain content with the same ``data_seed`` gets the same :class:`Protocol`, so they are compared on the same
data by construction; only the training ``seed`` (initialisation, training negatives, dropout, shuffling)
varies between them.

What a protocol fixes, all drawn from generators keyed by the content and ``data_seed``, never by a name or
by the training seed:

- the split, with RecBole's own semantics of ``eval_args`` (``order`` RO / TO, ``group_by``, ``split`` LS /
  RS, computed with RecBole's own ``_grouped_index``, ``_split_index_by_leave_one_out`` and
  ``_calcu_split_ids``), or RecBole benchmark files when the dataset has them;
- ``user_holdout``: users (not interactions) split into train / valid / test, stratified by label on a
  profile task (one interaction per user); ``label_fraction`` keeps that share of the training users;
- ``keep_fraction``: each training user keeps ``max(1, round(f n))`` of her n training interactions. Valid
  and test are never thinned, and thinned-away interactions stay excluded from the evaluation candidates
  (and masked in full ranking), so the evaluation is identical at every sparsity level. A fixed random
  priority per row decides what is kept, so a 10 % domain is a subset of the 20 % one;
- the sampled evaluation candidates (``uniN``): drawn ONCE by RecBole's own evaluation dataloader and
  sampler, under a generator keyed by the content and ``data_seed``, and recorded.

With ``protocol_cache: True`` (the default) the split and the recorded candidates are written under
``protocol_dir`` (``<content hash>.npz``, plain arrays) and read back by every later run, Ray trial or
process; the collated evaluation batches are kept in memory, so validating an epoch costs one forward pass.
With ``protocol_cache: False`` nothing is stored: the split is recomputed and every evaluation redraws its
candidates through RecBole's sampler under the same keyed generator, which gives the same candidates and
therefore the same metrics, slower (a test checks it).
"""

import copy
import hashlib
import json
import logging
import os
import tempfile
import zipfile

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader
from recbole.data.dataset import SequentialDataset
from recbole.data.interaction import Interaction
from recbole.data.utils import create_samplers, get_dataloader
from recbole.sampler import KGSampler
from recbole.utils import ModelType

from ..errors import TransferConfigError, TransferDataError
from ..utils import fixed_rng
from .domains import validate_holdout

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 2  # 2: RecBole's own split (its build() under the data seed)


def _code_key():
    """What else decides a protocol besides its data and keys: this module's code, the package's version, and the
    versions of the libraries that draw it (RecBole's split and samplers, numpy's and torch's generators). Part of
    every protocol key, so a cached protocol from other code is never reused."""
    import recbole

    from .. import __version__

    with open(__file__, "rb") as f:
        code = hashlib.sha1(f.read()).hexdigest()
    return {"version": PROTOCOL_VERSION, "code": code, "recbole_transfer": __version__, "recbole": recbole.__version__,
            "numpy": np.__version__, "torch": torch.__version__}


CODE_KEY = _code_key()
PHASES = ("train", "valid", "test")


def data_seed_of(config):
    """The seed of the data: ``data_seed``, or the training ``seed`` when it is not set."""
    value = config["data_seed"]
    return int(config["seed"] if value is None else value)


def _digest(*parts):
    h = hashlib.sha1()
    for part in parts:
        if isinstance(part, np.ndarray):
            h.update(str(part.dtype).encode())
            h.update(np.ascontiguousarray(part).tobytes())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode("utf-8"))
        h.update(b"|")
    return h.hexdigest()


def _rng(key, purpose):
    """A numpy generator keyed by the protocol key and what it draws (split, thinning, candidates)."""
    return np.random.default_rng(int(_digest(key, purpose)[:15], 16))


class Protocol:
    """The split and evaluation candidates of one (domain content, data_seed); see the module docstring.

    Build it with :meth:`of` (reads the disk cache or computes), then :meth:`dataloaders` gives RecBole's
    train / valid / test dataloaders on it.
    """

    def __init__(self, key, rows, candidates, meta):
        self.key = key  # content hash + protocol arguments + data_seed (names the cache file)
        self.rows = rows  # {'train_full', 'train', 'valid', 'test'}: row indices into the dataset
        self.candidates = candidates  # {phase: (keys [n, 3]: user, positive, occurrence; negatives [n, N])}
        self.meta = meta

    # ----- construction ------------------------------------------------------------------------
    @classmethod
    def of(cls, config, dataset, user_parts=None):
        """The protocol of ``dataset`` under ``config`` (its ``data_seed``, split and thinning keys): read
        from ``protocol_dir`` when cached, else computed. Leaves ``dataset.inter_feat`` as an Interaction.

        ``user_parts``: {'valid': user ids, 'test': user ids, 'drop': user ids} (internal ids) splits by USER
        instead of ``eval_args``: every interaction of a valid (test) user validates (tests), a dropped user's
        interactions leave the domain, every other user's train (a cold-start protocol; part of the key)."""
        args = protocol_args(config, dataset)
        if user_parts is not None:
            args["user_parts"] = {part: sorted(int(u) for u in user_parts.get(part, ())) for part in ("valid", "test", "drop")}
        dataset._change_feat_format()  # what RecBole's build() does first (sequential data: augmentation)
        feat = dataset.inter_feat
        content = [feat[dataset.uid_field].numpy(), feat[dataset.iid_field].numpy()]
        if dataset.time_field in feat:
            content.append(feat[dataset.time_field].numpy())
        # What is drawn (order, held-out users, thinning priorities, candidates) is keyed by the content, the
        # split and the data seed only: thinning a domain more or less never changes valid, test or candidates.
        thinning = ("keep_fraction", "label_fraction")
        drawn = {k: v for k, v in args.items() if k not in thinning}
        drawn["user_holdout"] = {k: v for k, v in (args["user_holdout"] or {}).items() if k not in thinning} or None
        draw_key = _digest(CODE_KEY, type(dataset).__name__, dataset.user_num, dataset.item_num, len(feat),
                           *content, drawn)
        key = _digest(draw_key, args)
        path = cls._path(config, key)
        if path is not None and os.path.isfile(path):
            loaded = cls._load(path, key)
            if loaded is not None:
                return loaded
        rows = _split(dataset, config, draw_key, args)
        return cls(key, rows, {}, {"args": args, "interactions": len(feat), "draw_key": draw_key})

    @staticmethod
    def _path(config, key):
        if not config["protocol_cache"]:
            return None
        return os.path.join(os.path.abspath(config["protocol_dir"]), f"{key[:24]}.npz")

    @classmethod
    def _load(cls, path, key):
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                if meta.get("key") != key:
                    return None
                rows = {name: data[f"rows_{name}"] for name in ("train_full",) + PHASES}
                candidates = {phase: (data[f"{phase}_keys"], data[f"{phase}_negatives"]) for phase in meta.get("candidates", [])}
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # a damaged file is rebuilt, not trusted
            logger.warning("protocol cache %s unreadable (%s): rebuilding it", path, exc)
            return None
        return cls(key, rows, candidates, meta)

    def _save(self, config):
        path = self._path(config, self.key)
        if path is None:
            return
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._write(path)
        except OSError as exc:
            raise TransferConfigError(
                f"protocol_dir={config['protocol_dir']!r}: cannot write the protocol there ({exc.strerror or exc}); "
                "give a writable folder, or protocol_cache: False"
            ) from None

    def _write(self, path):
        arrays = {f"rows_{name}": np.asarray(v, dtype=np.int64) for name, v in self.rows.items()}
        for phase, (keys, negatives) in self.candidates.items():
            arrays.update({f"{phase}_keys": keys, f"{phase}_negatives": negatives})
        meta = {**self.meta, "key": self.key, "candidates": sorted(self.candidates)}
        fd, tmp = tempfile.mkstemp(prefix=".protocol-", suffix=".npz", dir=os.path.dirname(path))
        os.close(fd)
        np.savez(tmp, meta=np.array(json.dumps(meta, default=str)), **arrays)
        os.replace(tmp, path)  # atomic: parallel trials never read half a file

    # ----- dataloaders -------------------------------------------------------------------------
    def dataloaders(self, config, dataset):
        """RecBole's train / valid / test dataloaders on this protocol (RecBole's dataloader and sampler
        classes; the evaluation ones replay the protocol's candidates)."""
        dataset._drop_unused_col()
        parts = {name: dataset.copy(dataset.inter_feat[torch.as_tensor(idx, dtype=torch.long)])
                 for name, idx in self.rows.items()}
        train_sampler, *eval_samplers = create_samplers(config, dataset, [parts[p] for p in PHASES])
        if len(self.rows["train"]) != len(self.rows["train_full"]):  # thinned: the evaluation samplers still
            # exclude every interaction of the domain, thinned-away ones included
            eval_samplers = create_samplers(config, dataset, [parts["train_full"], parts["valid"], parts["test"]])[1:]
        if config["MODEL_TYPE"] == ModelType.KNOWLEDGE:
            kg_sampler = KGSampler(dataset, config["train_neg_sample_args"]["distribution"],
                                   config["train_neg_sample_args"]["alpha"])
            train_data = get_dataloader(config, "train")(config, parts["train"], train_sampler, kg_sampler, shuffle=True)
        else:
            train_data = get_dataloader(config, "train")(config, parts["train"], train_sampler, shuffle=config["shuffle"])
        loaders, recorded = [train_data], False
        for phase, sampler in zip(("valid", "test"), eval_samplers):
            stored, recorder = self.candidates.get(phase), None
            if stored is not None:
                sampler = FixedCandidates(sampler.phase, *stored)
            elif config["protocol_cache"] and _samples(config, phase):
                sampler = recorder = RecordingSampler(sampler)
            loader = protocol_loader(get_dataloader(config, phase))(config, parts[phase], sampler, shuffle=False)
            loader.setup_protocol(int(_digest(self.meta["draw_key"], "candidates", phase)[:8], 16), keep=bool(config["protocol_cache"]))
            if recorder is not None:
                list(loader)  # the one draw of this phase's candidates; its batches stay in memory
                self.candidates[phase] = recorder.arrays()
                recorded = True
            loaders.append(loader)
        path = self._path(config, self.key)
        if path is not None and (recorded or not os.path.isfile(path)):
            self._save(config)
        return tuple(loaders)

    @staticmethod
    def fingerprint(train_data, valid_data, test_data):
        """A hash of what the trainers receive: the training interactions, and of every evaluation phase the rows it
        scores (users, candidate items), its positives and its masked history as (user, item) pairs. Batches are
        joined before hashing, so the same candidates give the same fingerprint at any ``eval_batch_size``."""
        ds = train_data._dataset
        parts = [ds.inter_feat[ds.uid_field].numpy(), ds.inter_feat[ds.iid_field].numpy()]
        for loader in (valid_data, test_data):
            columns = {name: [] for name in ("users", "items", "positive_users", "positive_items", "history_users",
                                             "history_items")}
            for interaction, extra, positive_u, positive_i in loader:
                users = interaction[ds.uid_field].numpy()
                columns["users"].append(users)
                if ds.iid_field in interaction:
                    columns["items"].append(interaction[ds.iid_field].numpy())
                row_users = users  # what positive_u indexes: the batch's rows, or its users' groups (sampled candidates)
                if isinstance(extra, torch.Tensor):
                    groups = extra.numpy()
                    row_users = users[np.searchsorted(groups, np.arange(groups.max() + 1 if len(groups) else 0))]
                elif isinstance(extra, tuple):  # full ranking: the masked history (batch row, item)
                    columns["history_users"].append(users[extra[0].numpy()])
                    columns["history_items"].append(extra[1].numpy())
                if positive_u is not None:
                    columns["positive_users"].append(row_users[np.asarray(positive_u)])
                    columns["positive_items"].append(np.asarray(positive_i))
            parts += [np.concatenate(v) if v else np.zeros(0, dtype=np.int64) for v in columns.values()]
        return _digest(*parts)[:16]


def protocol_args(config, dataset):
    """Everything besides the content that decides the split and candidates (part of the protocol key)."""
    eval_args = config["eval_args"]
    holdout = config["user_holdout"]
    fraction = config["keep_fraction"]
    if holdout is not None:
        holdout = validate_holdout("user_holdout", holdout)
    if isinstance(dataset, SequentialDataset) and dataset.benchmark_filename_list is None and eval_args["order"] != "TO":
        raise TransferConfigError(
            f"eval_args.order={eval_args['order']!r}: {config['model']} is a sequential model and RecBole splits its "
            "sequences in time order only; set eval_args.order: TO (the plugin's default for sequential models)"
        )
    split = eval_args["split"] or {}
    if isinstance(split, dict) and split.get("LS") not in (None, "valid_and_test"):
        raise TransferConfigError(
            f"eval_args.split.LS={split['LS']!r}: a run needs a validation part (early stopping, selection) and a test "
            "part; allowed: valid_and_test"
        )
    if isinstance(dataset, SequentialDataset) and fraction < 1:
        raise TransferConfigError(
            f"keep_fraction={fraction!r}: {config['model']} is a sequential model; RecBole builds each training row's "
            "item history before the split, so thinned-away items would stay in the input sequences. Thin the "
            "domain with a rule (e.g. a time window) or use keep_fraction: 1.0"
        )
    return {
        "split": eval_args["split"], "group_by": eval_args["group_by"], "order": eval_args["order"],
        "mode": eval_args["mode"], "valid_neg": config["valid_neg_sample_args"], "test_neg": config["test_neg_sample_args"],
        # RecBole 1.2.1 draws popularity-distributed evaluation candidates with the training sampler's alpha
        "train_neg": config["train_neg_sample_args"],
        "benchmark": list(dataset.file_size_list) if dataset.benchmark_filename_list is not None else None,
        "user_holdout": holdout, "keep_fraction": float(fraction), "data_seed": data_seed_of(config),
    }


def _samples(config, phase):
    args = config[f"{phase}_neg_sample_args"] or {}
    return args.get("distribution", "none") != "none" and args.get("sample_num", "none") != "none"


# ----- split -----------------------------------------------------------------------------------------
def _split(dataset, config, key, args):
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
    rng = _rng(key, "user_holdout")
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
    priority = _rng(key, "label_fraction").random(int(users.max()) + 1)
    kept = []
    for label in np.unique(labels):
        members = unique[labels == label]
        quota = max(1, int(round(len(members) * fraction)))
        kept.extend(members[np.argsort(priority[members], kind="stable")[:quota]])
    return train[np.isin(users[train], np.asarray(kept))]


def _thin_rows(users, train, fraction, key):
    """Each training user keeps ``max(1, round(f n))`` of her n training rows: the rows with the lowest
    fixed random priority, so lower fractions keep subsets of higher ones."""
    priority = _rng(key, "keep_fraction").random(len(users))[train]
    order = np.lexsort((priority, users[train]))  # by user, then priority
    sorted_users = users[train][order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    sizes = np.diff(np.r_[starts, len(sorted_users)])
    rank = np.arange(len(sorted_users)) - np.repeat(starts, sizes)
    quota = np.maximum(1, np.round(sizes * fraction).astype(int))
    keep = np.zeros(len(train), dtype=bool)
    keep[order[rank < np.repeat(quota, sizes)]] = True
    return train[keep]


# ----- candidates --------------------------------------------------------------------------------------
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


class _ProtocolEval:
    """Mixin for RecBole's evaluation dataloaders: draws under the protocol's generator; with the cache,
    collates once and replays the batches."""

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


__all__ = ["Protocol", "data_seed_of", "protocol_loader", "FixedCandidates", "RecordingSampler",
           "FullSortEvalDataLoader", "NegSampleEvalDataLoader"]
