r"""PeterRec: one pretrained sequential network, frozen, with grafted model patches and a task head.

Reference:
    Fajie Yuan, Xiangnan He, Alexandros Karatzoglou and Liguang Zhang. "Parameter-Efficient Transfer from
    Sequential Behaviors for User Modeling and Recommendation" (SIGIR 2020).

Setting: a network is pretrained, self-supervised, on users' item sequences of a source domain (RecBole's
``NextItNet``, next-item softmax). A target task gives (user, y) pairs for the SAME users: y is a profile
label (gender, age bucket, occupation) or an item of another domain (cold-start recommendation). The
user's source sequence, with a [CLS] position appended, goes through the network; the hidden state at
the [CLS] position is the user representation, and a new head (a linear softmax over the target's labels
or items; for items its weight is a new item embedding table) maps it to y.

In RecBole terms this is a general recommender over the TARGET dataset: its "items" are the task's
labels or target items, training is softmax cross-entropy, and evaluation is RecBole's full ranking
(accuracy of a profile task = Hit@1). The pretrained network is a live RecBole model (``self.backbone``),
rebuilt from the source checkpoint (``source_checkpoint``: its config, its dataset, its weights), never a
copy of its code; what trains is decided by :class:`~recbole_transfer.methods.peterrec.strategy.PatchTransfer`.

Faithfulness:
    - The paper's [CLS] token is a new, frozen, random vocabulary row. Here it is a frozen random vector
      written at position ``len(sequence)`` of the right-padded sequence (RecBole's layout), never at
      the padding id 0.
    - RecBole's NextItNet is pretrained on RecBole's prefix-augmented sequences with the loss at the last
      position (the same (prefix, next item) pairs as the paper's loss at every position) and reads its
      hidden state at the last padded position; unchanged here.
    - Only causal NextItNet is declared; the paper's best Table 3 numbers use a non-causal (masked) CNN.
"""

import torch
from torch import nn

from ...config import get_model
from .source import load_source
from .strategy import backbone_of
from ...model.user_softmax import UserSoftmax


class PeterRec(UserSoftmax):
    """A pretrained sequential network (``backbone``) + [CLS] user representation + a new linear head."""

    builds_on_source = True  # reads source_checkpoint when built: the runner builds it after the source stage


    def __init__(self, config, dataset):
        super().__init__(config, dataset)

        # load parameters info
        source = load_source(config["source_checkpoint"])
        self.sequence_length = config["sequence_length"]

        # define layers and loss: the pretrained network as RecBole builds it, the head, the [CLS] vector
        self.backbone = get_model(source.config["model"])(source.config, source.dataset)
        self.backbone_spec = backbone_of(source.config["model"], config["backbone_modules"])
        embedding = self.backbone.get_submodule(self.backbone_spec.embedding)
        self.embedding_size = embedding.embedding_dim
        self.head = nn.Linear(self.embedding_size, self.n_items)
        self.register_buffer("cls_embedding", torch.randn(self.embedding_size) * embedding.weight.detach().std())

        # each target user's source sequence (last `sequence_length` items, right-padded, room for [CLS])
        seqs, lens = source.sequences_for(dataset.field2id_token[self.USER_ID], self.sequence_length)
        self.register_buffer("item_seq", torch.as_tensor(seqs), persistent=False)
        self.register_buffer("item_seq_len", torch.as_tensor(lens), persistent=False)

    def user_representation(self, user):
        """Hidden state of the top block at each user's [CLS] position. [B] -> [B, d]"""
        seq, lens = self.item_seq[user], self.item_seq_len[user]
        emb = self.backbone.get_submodule(self.backbone_spec.embedding)(seq)
        at_cls = (torch.arange(seq.size(1), device=seq.device)[None, :] == lens[:, None]).unsqueeze(-1)
        emb = torch.where(at_cls, self.cls_embedding.to(emb.dtype), emb)
        hidden = self.backbone.get_submodule(self.backbone_spec.blocks)(emb)
        return hidden[torch.arange(seq.size(0), device=seq.device), lens]

    def _logits(self, user):
        """Head scores per row; each distinct user's sequence runs through the network once."""
        users, inverse = torch.unique(user, return_inverse=True)
        return self.head(self.user_representation(users))[inverse]
