"""Documents of a domain pair: each user's and each item's text, built from TRAINING interactions only.

A domain's interactions carry a ``token_seq`` field (``doc_field``, e.g. ``review``: the review's words; RecBole
loads it and numbers its tokens per dataset). A user's document is the concatenation of that field over her
training interactions of the domain (in row order), an item's over the training interactions it received.

A user's auxiliary document (the auxiliary reviews of a review-based model) joins, for each of her training
interactions, one review of the same item with the same rating, in one of two ways:

- the paper's (default): the review of ANOTHER user (the first in row order; none when there is no such review),
  for every user of the domain;
- ``code_faithful_aux: True``, what the released preprocessing of the model that introduced them does: only users
  who are NOT in both domains get an auxiliary document and lend reviews to one (the released code leaves the cold
  and the kept overlapping users out of both), and the review is drawn at random among ALL such reviews of the item
  with that rating, her own included (so one always exists; the released code's fallback to ratings +1 / -1 can
  never run). Overlapping users, the ones a cross-domain model transfers for, then have no auxiliary document. The
  draw is seeded by the data seed.

Nothing of a validation or test interaction enters any document, so a cold user's target document is empty by
construction. Documents longer than ``max_doc_len`` tokens keep their first ``max_doc_len`` tokens; how
many were cut is logged and kept in ``truncated``, not an error.

The two domains' vocabularies are joined by token string into one (index 0: padding), so a word shared by both
domains has one id.
"""

import logging
from dataclasses import dataclass, field

import numpy as np
import torch
from recbole.utils import FeatureType

from ...data import data_seed_of
from ...errors import TransferDataError

logger = logging.getLogger(__name__)

DOMAINS = ("source", "target")


@dataclass
class Documents:
    vocab: list  # id -> token; 0 is padding
    doc_field: str = None  # the field it was built from
    max_len: int = None
    code_faithful_aux: bool = False
    user_docs: dict = field(default_factory=dict)  # domain -> LongTensor [users of the domain, max_doc_len]
    item_docs: dict = field(default_factory=dict)  # domain -> LongTensor [items of the domain, max_doc_len]
    aux_docs: dict = field(default_factory=dict)  # domain -> LongTensor [users of the domain, max_doc_len]
    truncated: dict = field(default_factory=dict)  # "<domain> <kind>" -> documents cut at max_doc_len


def _texts(data, doc_field, shared):
    """Per interaction row of the domain: its token list in shared-vocabulary ids (padding dropped)."""
    ds = data.dataset
    if doc_field not in ds.inter_feat:
        raise TransferDataError(f"doc_field={doc_field!r}: the {ds.dataset_name!r} interactions have no such field "
                                f"(fields: {', '.join(ds.inter_feat.columns)}); load it with load_col")
    if ds.field2type[doc_field] != FeatureType.TOKEN_SEQ:
        raise TransferDataError(f"doc_field={doc_field!r}: the {ds.dataset_name!r} interactions hold it as "
                                f"{ds.field2type[doc_field].value}, not as a token_seq of words")
    local = ds.field2id_token[doc_field]
    to_shared = np.array([0] + [shared.setdefault(str(t), len(shared)) for t in local[1:]], dtype=np.int64)
    seqs = to_shared[ds.inter_feat[doc_field].numpy()]
    return [row[row > 0] for row in seqs]


def _pack(groups, n, max_len, label, truncated):
    out = torch.zeros(n, max_len, dtype=torch.long)
    cut = 0
    for key, parts in groups.items():
        tokens = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)
        if len(tokens) > max_len:
            cut += 1
            tokens = tokens[:max_len]
        out[key, :len(tokens)] = torch.as_tensor(tokens)
    truncated[label] = cut
    return out


def _auxiliary(rows, users, items, label, texts, code_faithful, in_both, rng):
    """{user: [review texts]}: her auxiliary reviews (see the module docstring)."""
    if code_faithful:
        rows = rows[~in_both[users[rows]]]
    by_key = {}  # (item, rating) -> rows in training order
    for r in rows:
        by_key.setdefault((int(items[r]), float(label[r])), []).append(r)
    aux = {}
    for r in rows:
        candidates = by_key[(int(items[r]), float(label[r]))]
        if code_faithful:
            other = candidates[int(rng.integers(len(candidates)))]
        else:
            other = next((o for o in candidates if users[o] != users[r]), None)
        if other is not None:
            aux.setdefault(int(users[r]), []).append(texts[other])
    return aux


def build_documents(pair, doc_field, max_len, code_faithful_aux=False):
    """The :class:`Documents` of a :class:`~recbole_transfer.methods.overlap_cdr.pair.DomainPair`."""
    shared = {"[PAD]": 0}
    docs = Documents(vocab=[], doc_field=doc_field, max_len=max_len, code_faithful_aux=code_faithful_aux)
    rng = np.random.default_rng(data_seed_of(pair.target.config))
    in_both = {"source": (pair.links.source_to_target > 0).numpy(), "target": (pair.links.target_to_source > 0).numpy()}
    for domain, data in zip(DOMAINS, (pair.source, pair.target)):
        texts = _texts(data, doc_field, shared)
        ds = data.dataset
        feat = ds.inter_feat
        users, items = feat[ds.uid_field].numpy(), feat[ds.iid_field].numpy()
        label = feat[data.config["LABEL_FIELD"]].numpy() if data.config["LABEL_FIELD"] in feat else np.zeros(len(users))
        by_user, by_item = {}, {}
        rows = np.asarray(data.protocol.rows["train"])
        for r in rows:
            by_user.setdefault(int(users[r]), []).append(texts[r])
            by_item.setdefault(int(items[r]), []).append(texts[r])
        aux = _auxiliary(rows, users, items, label, texts, code_faithful_aux, in_both[domain], rng)
        docs.user_docs[domain] = _pack(by_user, ds.user_num, max_len, f"{domain} users", docs.truncated)
        docs.item_docs[domain] = _pack(by_item, ds.item_num, max_len, f"{domain} items", docs.truncated)
        docs.aux_docs[domain] = _pack(aux, ds.user_num, max_len, f"{domain} auxiliary", docs.truncated)
    docs.vocab = [t for t, _ in sorted(shared.items(), key=lambda kv: kv[1])]
    cut = {k: v for k, v in docs.truncated.items() if v}
    if cut:
        logger.warning("documents longer than max_doc_len=%d were truncated: %s", max_len,
                       ", ".join(f"{k} {v}" for k, v in cut.items()))
    return docs
