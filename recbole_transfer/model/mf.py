r"""MF: matrix factorisation trained with the log loss and one sampled negative per positive.

A shared base recommender (periodic retraining uses it by default): ŷ_ui = p_u · q_i, W = {P, Q}, and

    L0 = -Σ log σ(ŷ_ui) - Σ log(1 - σ(ŷ_uj)),   j a uniformly sampled unobserved item.

RecBole's ``BPR`` has the same tables and scoring but the pairwise BPR loss; the paper's loss is
pointwise, so MF is BPR with its ``calculate_loss`` replaced. The negative comes from RecBole's sampler
(``train_neg_sample_args``), so the model is PAIRWISE in RecBole's sense: each training row holds a user,
her item and one negative item.
"""

import torch
import torch.nn.functional as F
from recbole.model.general_recommender import BPR


class MF(BPR):
    """Dot product of a user row and an item row; log loss on a positive and a sampled negative.

    RecBole's ``BPR`` with the loss replaced: its tables, initialisation and scoring are kept.
    """

    def calculate_loss(self, interaction):
        user = self.user_embedding(interaction[self.USER_ID])
        pos = (user * self.item_embedding(interaction[self.ITEM_ID])).sum(-1)
        neg = (user * self.item_embedding(interaction[self.NEG_ITEM_ID])).sum(-1)
        logits = torch.cat([pos, neg])
        labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
        return F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / pos.numel()
