"""The evaluation protocol of a domain: one split and one set of evaluation candidates per (content, data_seed).

Every arm of a scenario, every trial of a search and every method of a benchmark that trains on the same
domain content with the same ``data_seed`` gets the same :class:`Protocol`, so they are compared on the same
data by construction; only the training ``seed`` (initialisation, training negatives, dropout, shuffling)
varies between them.

What a protocol fixes, all drawn under the ``data_seed``, never under a name or the training seed (:mod:`.split`,
:mod:`.candidates`):

- the split: RecBole's own ``build()`` of ``eval_args`` (``order`` RO / TO, ``group_by``, ``split`` RS / LS / TS,
  or the dataset's benchmark files), seeded as ``run_recbole`` seeds it, so ``transfer: none`` with ``data_seed``
  equal to ``seed`` splits as plain RecBole does;
- ``user_holdout``: users (not interactions) split into train / valid / test, stratified by label on a
  profile task (one interaction per user); ``label_fraction`` keeps that share of the training users;
- ``keep_fraction``: each training user keeps ``max(1, round(f n))`` of her n training interactions. Valid
  and test are never thinned, and thinned-away interactions stay excluded from the evaluation candidates
  (and masked in full ranking), so the evaluation is identical at every sparsity level. A fixed random
  priority per row decides what is kept, so a 10 % domain is a subset of the 20 % one;
- the sampled evaluation candidates (``uniN``): drawn ONCE by RecBole's own evaluation dataloader and
  sampler, under a generator keyed by the content and ``data_seed`` (and :data:`DRAW_KEY`: the protocol version, the
  libraries' versions and the frozen hash of the drawing code, not the live code), and recorded;
  ``candidate_draw: arrays`` draws them instead in one vectorised step (:func:`draw_candidates`: the same uniform
  distribution, other candidates; such protocols are cached apart and keep the same split).

With ``protocol_cache: True`` (the default) the split and the recorded candidates are written under
``protocol_dir`` (``<key>.npz``, plain arrays; the key holds the content, the keys that decide the draws, and
:data:`CODE_KEY`: the drawing code and the libraries' versions) and read back by every later run, Ray trial or
process; the collated evaluation batches are kept in memory, so validating an epoch costs one forward pass.
With ``protocol_cache: False`` nothing is stored: the split is recomputed and every evaluation redraws its
candidates through RecBole's sampler under the same keyed generator, which gives the same candidates and
therefore the same metrics, slower (a test checks it).
"""

import hashlib
import json
import logging
import os
import tempfile
import time
import zipfile

import numpy as np
import torch
from recbole.data.dataloader import FullSortEvalDataLoader, NegSampleEvalDataLoader
from recbole.data.dataset import SequentialDataset
from recbole.data.utils import create_samplers, get_dataloader
from recbole.sampler import KGSampler
from recbole.utils import ModelType

from ..errors import TransferConfigError, TransferDataError
from ..keys import data_seed_of
from .. import utils
from . import candidates as candidates_module
from . import split as split_module
from .candidates import FixedCandidates, RecordingSampler, protocol_loader
from .domains import validate_holdout
from .split import PHASES, digest, split_rows

logger = logging.getLogger(__name__)

PROTOCOL_VERSION = 2  # 2: RecBole's own split (its build() under the data seed)


def _code_key():
    """What else decides a protocol besides its data and keys: the code that draws it (this module, :mod:`.split`,
    :mod:`.candidates`, and the module of ``utils.fixed_rng``, which seeds the draws), the package's version, and the
    versions of the libraries that draw it (RecBole's split and samplers, numpy's and torch's generators). Part of
    every protocol key, so a cached protocol from other code is never reused."""
    import recbole

    from .. import __version__

    code = hashlib.sha1()
    for module in (__file__, split_module.__file__, candidates_module.__file__, utils.__file__):
        with open(module, "rb") as f:
            code.update(f.read())
    code = code.hexdigest()
    return {"version": PROTOCOL_VERSION, "code": code, "recbole_transfer": __version__, "recbole": recbole.__version__,
            "numpy": np.__version__, "torch": torch.__version__}


CODE_KEY = _code_key()
# The drawing code under which protocol version 2 draws (the hash of these modules when it was measured; every results
# file whose numbers depend on draws, sampled candidates or thinning or held-out users, records it as
# "2/4a66e9cf02dd"). The draws (thinning priorities, held-out users, candidates) are keyed by it and not by the live
# code, so an edit that does not change how they draw (a docstring, evaluation batching, a log line) keeps every split
# and candidate; an edit that does change them must bump PROTOCOL_VERSION and set DRAW_CODE anew. The other entries
# of CODE_KEY stay in the draws' key as they were when version 2 was measured: a new version of this package, of
# RecBole, numpy or torch redraws. The cache key holds the live code as well: a protocol cached by other code is
# rebuilt (to the same draws).
DRAW_CODE = "4a66e9cf02dd93c1970a0fdf1b72b3421b6e11d0"
DRAW_KEY = {**CODE_KEY, "code": DRAW_CODE}


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
        self.from_cache = False  # read from protocol_dir (True) or drawn now

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
        drawn = {k: v for k, v in args.items() if k not in thinning + ("candidate_draw",)}  # the same split either way
        drawn["user_holdout"] = {k: v for k, v in (args["user_holdout"] or {}).items() if k not in thinning} or None
        draw_key = digest(DRAW_KEY, type(dataset).__name__, dataset.user_num, dataset.item_num, len(feat),
                           *content, drawn)
        key = digest(draw_key, args, CODE_KEY)
        path = cls._path(config, key)
        if path is not None and os.path.isfile(path):
            loaded = cls._load(path, key)
            if loaded is not None:
                loaded.from_cache = True
                return loaded
        rows = split_rows(dataset, config, draw_key, args)
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
            if stored is None and _samples(config, phase) and config["candidate_draw"] == "arrays":
                start = time.time()
                seen = [parts[p] for p in ("train_full", "valid", "test")[:2 if phase == "valid" else 3]]
                stored = self.candidates[phase] = draw_candidates(parts[phase], seen, config[f"{phase}_neg_sample_args"],
                                                                  digest(self.meta["draw_key"], "candidates", phase, "arrays"))
                recorded = True
                logger.info("set-up %s: %s candidates drawn in arrays for %d positives (%.1f s)", dataset.dataset_name,
                            phase, len(stored[0]), time.time() - start)
            if stored is not None:
                sampler = FixedCandidates(sampler.phase, *stored)
            elif config["protocol_cache"] and _samples(config, phase):
                sampler = recorder = RecordingSampler(sampler)
            loader = protocol_loader(get_dataloader(config, phase))(config, parts[phase], sampler, shuffle=False)
            loader.setup_protocol(int(digest(self.meta["draw_key"], "candidates", phase)[:8], 16), keep=bool(config["protocol_cache"]))
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
        return digest(*parts)[:16]


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
        "train_alpha": _evaluation_alpha(config),
        "benchmark": list(dataset.file_size_list) if dataset.benchmark_filename_list is not None else None,
        "user_holdout": holdout, "keep_fraction": float(fraction), "data_seed": data_seed_of(config),
        # only when not RecBole's draw and candidates are drawn: every protocol drawn before this key keeps its key
        **({"candidate_draw": config["candidate_draw"]} if config["candidate_draw"] != "recbole" and (
            _samples(config, "valid") or _samples(config, "test")) else {}),
    }


def _evaluation_alpha(config):
    """The training sampler's ``alpha`` when an evaluation phase draws candidates by popularity (RecBole 1.2.1 builds
    that sampler with the TRAINING negatives' alpha), else None: training negatives change no candidate then, so
    trials that differ only in them share one protocol."""
    by_popularity = any((config[f"{phase}_neg_sample_args"] or {}).get("distribution") == "popularity"
                        for phase in ("valid", "test"))
    return (config["train_neg_sample_args"] or {}).get("alpha", 1.0) if by_popularity else None


def draw_candidates(phase_data, seen, neg_args, key):
    """``candidate_draw: arrays``: the candidates of every positive of a phase in one vectorised draw, (keys [n, 3]: user,
    positive, occurrence; negatives [n, sample_num] int32). Each candidate is uniform over the items (ids 1 .. items - 1,
    as RecBole's sampler) the user has no interaction with in ``seen`` (the training rows, thinned-away ones included,
    and the evaluation phases up to this one: RecBole's phase sampler excludes the same), drawn with replacement, under
    a generator keyed by ``key``. The distribution of RecBole's uniform sampler; other draws than its own."""
    if neg_args.get("distribution") != "uniform":
        raise TransferConfigError(
            f"candidate_draw: arrays draws uniform candidates only (this phase asks for {neg_args.get('distribution')!r}"
            " candidates); use candidate_draw: recbole")
    uid, iid = phase_data.uid_field, phase_data.iid_field
    items = phase_data.item_num
    users, positives = phase_data.inter_feat[uid].numpy(), phase_data.inter_feat[iid].numpy()
    used = np.unique(np.concatenate([d.inter_feat[uid].numpy().astype(np.int64) * items + d.inter_feat[iid].numpy()
                                     for d in seen]))
    per_user = np.bincount(used // items, minlength=phase_data.user_num)
    full = np.flatnonzero(per_user[np.unique(users)] >= items - 1)
    if len(full):
        raise TransferDataError(f"candidate_draw: {len(full)} evaluated users have interacted with every item: no "
                                "candidate is left to draw for them")
    rng = np.random.default_rng(int(key[:16], 16))
    negatives = rng.integers(1, items, size=(len(users), int(neg_args["sample_num"])), dtype=np.int64)
    redraw = np.ones(negatives.shape, dtype=bool)
    while True:  # rejection, in whole arrays: redraw every candidate the user has seen
        codes = users[:, None].astype(np.int64) * items + negatives
        at = np.minimum(np.searchsorted(used, codes[redraw]), len(used) - 1)
        hit = used[at] == codes[redraw]
        redraw[redraw] = hit
        if not hit.any():
            break
        negatives[redraw] = rng.integers(1, items, size=int(redraw.sum()), dtype=np.int64)
    keys = np.stack([users, positives, candidates_module._occurrences(users, positives)], axis=1).astype(np.int64)
    return keys, negatives.astype(np.int32 if items < 2 ** 31 else np.int64)


def _samples(config, phase):
    args = config[f"{phase}_neg_sample_args"] or {}
    return args.get("distribution", "none") != "none" and args.get("sample_num", "none") != "none"


__all__ = ["Protocol", "data_seed_of", "protocol_loader", "FixedCandidates", "RecordingSampler",
           "FullSortEvalDataLoader", "NegSampleEvalDataLoader"]
