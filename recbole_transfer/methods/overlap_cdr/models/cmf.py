r"""CMF (Singh & Gordon, KDD'08): collective matrix factorisation over the two domains.

The target's user table is shared with the source; each domain has its own item table; one joint stage, loss
``(1 - alpha) L_T + alpha L_S`` with one source batch drawn per target batch. With ``alpha: 0`` no source batch is
drawn and CMF trains exactly as :class:`~.base.TargetMF` (same tables in the same order, same initialisation, same
batches; a test checks equality); on ratings a cold user's bias is then 0 too, as TargetMF's (with ``alpha > 0``
her source offset).
"""

import torch

from ..stages import Stage
from .base import TargetMF, _table


class CMF(TargetMF):
    """Collective MF: the user table is shared by both domains; see the module docstring."""

    scores_source = True
    stages = {"joint": Stage("target", "target", ("user_embedding", "item_embedding", "item_bias", "user_bias", "source_user_extra",
                                                    "source_item_embedding", "source_item_bias"),
                             "shared users, both item tables: (1 - alpha) target loss + alpha source loss per batch")}

    def __init__(self, config, dataset, links):
        self.alpha = float(config["alpha"])
        self.bias_from_source = self.alpha > 0  # at alpha 0 nothing comes from the source, a cold user's b_u included
        super().__init__(config, dataset, links)

    def _add_modules(self):
        self.source_item_embedding = _table(self.n_source_items, self.k)
        self.source_item_bias = _table(self.n_source_items, 1)
        # source users who are not target users have rows of their own (overlapping users use the shared table)
        self.source_user_extra = _table(self.n_source_users, self.k)

    def source_users(self, source_ids):
        shared = self.source_to_target[source_ids]
        return torch.where((shared > 0).unsqueeze(-1), self.user_embedding(shared), self.source_user_extra(source_ids))

    def source_loss(self, interaction):
        users, items = self.source_users(interaction[self.USER_ID]), interaction[self.ITEM_ID]
        score = self.score(users, items, self.source_item_embedding, self.source_item_bias, self.source_mean)
        return self.regularised(self.point_loss(score, interaction[self.LABEL]), users, self.source_item_embedding(items))

    def calculate_loss(self, interaction):
        loss = self.target_loss(interaction)
        if self.alpha == 0.0:  # the target-only model, exactly: no source batch is drawn
            return loss
        source = next(self.feeds["source"]).to(self.device)
        return (1.0 - self.alpha) * loss + self.alpha * self.source_loss(source)

    def user_vectors(self, users):
        return self.source_users(users) if self.domain == "source" else self.user_embedding(users)

    def item_side(self):
        if self.domain == "source":
            return self.source_item_embedding, self.source_item_bias, self.source_mean
        return super().item_side()
