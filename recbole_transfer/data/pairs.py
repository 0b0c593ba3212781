"""Two domains that share users (or items): which ids are in both, only in the source, only in the target.

RecBole numbers each dataset's tokens on its own, so the same user has different ids in two datasets; a pair
is aligned by the raw token (``user_id`` by default; ``item_id`` for item overlap), or through ``link``, a
mapping from source tokens to target tokens when the two domains name their users differently.
"""

from dataclasses import dataclass

from ..errors import TransferDataError
from ..report import markdown


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
