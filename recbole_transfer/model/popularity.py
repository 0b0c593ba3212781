r"""Popularity: items ranked by how often they occur in the training split.

A baseline for the target tasks of any scenario. On a profile task (one label "item" per user) it
predicts the majority label of the training users, so its Hit@1 is the majority-class accuracy.

RecBole's own ``Pop`` counts an item once per batch however often it occurs in that batch (indexed
assignment), which flattens the counts of batches with repeats, e.g. a two-label task. Here the counts
are taken once, exactly, from the training dataset the model is built on; nothing is learned.
"""

import torch
from torch import nn
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType, ModelType


class Popularity(GeneralRecommender):
    """Scores every item by its training-split count (ties: lower item id first, by stable ranking)."""

    input_type = InputType.POINTWISE
    type = ModelType.TRADITIONAL  # counted once, as RecBole's Pop: one epoch

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        items = torch.as_tensor(dataset.inter_feat[self.ITEM_ID])
        self.register_buffer("counts", torch.bincount(items, minlength=self.n_items).to(torch.float32))
        self.anchor = nn.Parameter(torch.zeros(1))  # RecBole's trainer needs one parameter; never moves

    def calculate_loss(self, interaction):
        return self.anchor.sum() * 0.0

    def predict(self, interaction):
        return self.counts[interaction[self.ITEM_ID]]

    def full_sort_predict(self, interaction):
        return self.counts.repeat(interaction[self.USER_ID].shape[0], 1)
