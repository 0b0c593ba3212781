"""Two domains that share users (or items): which ids are in both, only in the source, only in the target.

RecBole numbers each dataset's tokens on its own, so the same user has different ids in two datasets; a pair
is aligned by the raw token (``user_id`` by default; ``item_id`` for item overlap), or through ``link``, a
mapping from source tokens to target tokens when the two domains name their users differently.
:func:`cold_start_split` draws the cold-start protocol's users from the overlap under the data seed.
"""

from dataclasses import dataclass

import numpy as np

from ..errors import TransferConfigError, TransferDataError
from ..report import markdown
from ..utils import stable_hash


@dataclass
class Overlap:
    """The raw tokens of one id field: in both domains, only in the source, only in the target."""

    field: str
    both: list
    source_only: list
    target_only: list

    def table(self, source="source", target="target"):
        """One Markdown row: all tokens of the pair, in both, only in ``source``, only in ``target``."""
        counts = [len(self.both), len(self.source_only), len(self.target_only)]
        return markdown([f"{self.field} tokens", "in both", f"only in {source}", f"only in {target}"], [[sum(counts)] + counts])


def tokens(dataset, field):
    """The raw tokens of ``field`` present in a RecBole dataset (the padding token excluded)."""
    if field not in dataset.field2id_token:
        raise TransferDataError(f"overlap: field {field!r} is not a token field of {dataset.dataset_name!r}; "
                                f"token fields: {', '.join(sorted(dataset.field2id_token))}")
    return [str(t) for t in dataset.field2id_token[field][1:]]


def overlap(source, target, field=None, link=None):
    """The :class:`Overlap` of two RecBole datasets on ``field`` (default: the user id field), raw tokens sorted.
    ``link``: {source token: target token} (tokens it does not map keep their own name)."""
    field = field or source.uid_field
    link = {str(k): str(v) for k, v in (link or {}).items()}
    src = {link.get(t, t) for t in tokens(source, field)}
    tgt = set(tokens(target, field))
    return Overlap(field, sorted(src & tgt), sorted(src - tgt), sorted(tgt - src))


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
    for key, value in (("eta", eta), ("cold_share", cold_share), ("cold_valid_share", valid_share)):
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or not 0.0 < value <= 1.0:
            raise TransferConfigError(f"{key}={value!r}: must be a number in (0, 1]")
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
