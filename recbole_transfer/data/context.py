"""Context tokens across domains: RecBole remaps token fields per dataset, in order of first appearance,
so the same context token ("h09", "student", "Comedy") gets different ids in two domains. A module whose
embedding rows are shared between domains must be aligned by token string, which is what this does.

``align_tokens(source_tokens, target_tokens)`` gives, for every target id, the source id of the same
token (-1 where the source never saw it; the padding id 0 maps to 0). ``copy_aligned`` copies the source
rows into a target table along that map and leaves unseen tokens' rows as they are (their initialiser).
Tokens of a field come from ``dataset.field2id_token[field]``.
"""

import numpy as np
import torch

from ..errors import TransferDataError


def align_tokens(source_tokens, target_tokens, field="field"):
    """Source id of each target token (-1: not in the source). Raises when no real token is shared."""
    index = {str(t): i for i, t in enumerate(source_tokens)}
    rows = np.array([index.get(str(t), -1) for t in target_tokens], dtype=np.int64)
    rows[0] = 0  # padding
    if len(rows) > 1 and (rows[1:] < 0).all():
        raise TransferDataError(
            f"context field {field!r}: the target's tokens {list(target_tokens[1:4])}... share nothing with the "
            f"source's {list(source_tokens[1:4])}...; a shared context module needs one vocabulary"
        )
    return rows


@torch.no_grad()
def copy_aligned(into, from_table, rows):
    """Copy rows of ``from_table`` into ``into`` along ``rows`` (from :func:`align_tokens`); returns how many
    target tokens the source did not have."""
    rows = torch.as_tensor(rows)
    known = rows >= 0
    into[known] = from_table[rows[known]].to(into.device, into.dtype)
    return int((~known).sum())
