r"""BagOfItems: logistic regression on the bag of a user's source items (a reference for PeterRec tasks).

Each user is the set of all her source-domain items (the same sequences PeterRec reads, from the same
``source_checkpoint``, order ignored); a linear softmax maps their mean one-hot vector to the target's
labels or items. Nothing is pretrained. It shows how much of a target task can be read off the source
behaviour directly: where it beats every PeterRec variant, the signal is in the data but not in what the
frozen pretrained network exposes.
"""

import torch
from torch import nn

from .source import load_source
from ...model.user_softmax import UserSoftmax


class BagOfItems(UserSoftmax):
    """Mean of per-item weight vectors over the user's source items, plus a bias: a linear classifier."""

    builds_on_source = True  # reads source_checkpoint when built: the runner builds it after the source stage

    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # load parameters info: every source item of each target user (right-padded with 0)
        source = load_source(config["source_checkpoint"])
        seqs, _ = source.sequences_for(dataset.field2id_token[self.USER_ID], source.longest)

        # define layers and loss
        self.register_buffer("bags", torch.as_tensor(seqs), persistent=False)
        n_source_items = source.dataset.num(source.config["ITEM_ID_FIELD"])
        self.weights = nn.EmbeddingBag(n_source_items, self.n_items, mode="mean", padding_idx=0)
        self.bias = nn.Parameter(torch.zeros(self.n_items))
        nn.init.zeros_(self.weights.weight)

    def _logits(self, user):
        return self.weights(self.bags[user]) + self.bias
