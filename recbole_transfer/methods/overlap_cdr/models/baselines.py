r"""The family's baselines: :class:`TargetPop` (popularity on the target's training rows, ranking) and
:class:`RatingMean` (the rating means, nothing learned). :class:`~.base.TargetMF` is the trained target-only one."""

import torch
from torch import nn

from ....errors import TransferConfigError
from ....model import Popularity
from .base import PairModel


class RatingMean(PairModel):
    """Rating baselines, nothing learned (``rating_mean``): ``global`` (the target's mean training rating),
    ``item`` (each item's mean, shrunk to the global mean by ``mean_shrinkage`` pseudo-ratings) or
    ``item_offset`` (the item mean plus the user's mean offset from the source item means in her source training
    ratings, shrunk to 0 by ``offset_shrinkage`` pseudo-ratings). A user without source ratings gets offset 0."""

    tasks = ("rating",)

    def __init__(self, config, dataset, links):
        super().__init__(config, dataset, links)
        self.kind = config["rating_mean"]
        beta, lam = float(config["mean_shrinkage"]), float(config["offset_shrinkage"])
        item_means, s_means = self.shrunk_item_means(dataset, beta)
        self.register_buffer("item_means", item_means)
        s_users, s_items, s_ratings = links.source_rows
        residual = s_ratings - s_means[s_items]
        total = torch.zeros(self.n_source_users).index_add_(0, s_users, residual)
        count = torch.zeros(self.n_source_users).index_add_(0, s_users, torch.ones_like(residual))
        offset = torch.cat([torch.zeros(1), (total / (count + lam))[1:]])
        self.register_buffer("user_offsets", offset[links.target_to_source])  # index 0 (no source user): 0
        self.anchor = nn.Parameter(torch.zeros(1))  # RecBole's trainer needs one parameter; never moves

    def calculate_loss(self, interaction):
        return self.anchor.sum() * 0.0

    def _predict(self, users, items):
        if self.kind == "global":
            return self.target_mean.expand(items.shape).clone()
        value = self.item_means[items]
        if self.kind == "item_offset":
            value = value + self.user_offsets[users]
        return value

    def predict(self, interaction):
        return self._predict(interaction[self.USER_ID], interaction[self.ITEM_ID])

    def full_sort_predict(self, interaction):
        raise TransferConfigError("RatingMean predicts ratings; it cannot rank (task: rating)")


class TargetPop(Popularity):
    """The shared popularity baseline (items by their count in the target's training rows), built as the family's
    models are (the pair's links are not needed); ranking only, nothing is learned."""

    tasks = ("ranking",)
    stages = {}

    def __init__(self, config, dataset, links=None):
        super().__init__(config, dataset)
