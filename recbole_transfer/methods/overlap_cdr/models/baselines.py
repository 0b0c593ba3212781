r"""The family's baselines on the target alone: :class:`TargetPop` (popularity), :class:`TargetItemKNN` and
:class:`TargetEASE`, :class:`TargetSLIM` (RecBole's ItemKNN, EASE and SLIMElastic, ranking), :class:`RatingMean` (the rating means, nothing learned). :class:`~.base.TargetMF` is the trained target-only MF the
cross-domain models build on (on ratings, the biased MF: global mean + user and item biases + factors)."""

import torch
from recbole.model.general_recommender import ItemKNN, SLIMElastic
from torch import nn

from ....errors import TransferConfigError
from ....model import EASE, Popularity
from ..stages import Stage
from .base import PairModel


class BuiltOnTarget:
    """A RecBole model built from the target's training rows in one pass (a traditional model: one epoch), run as one
    validated stage of the family's schedule (so that a search can pick its keys on validation). It ranks a user by her
    target training rows (``needs_target_history``), so it cannot score cold-start users, who have none."""

    tasks = ("ranking",)
    needs_target_history = True
    stages = {"target": Stage("target", "target", (), "built from the target's training rows (one pass)")}

    def __init__(self, config, dataset, links=None):
        super().__init__(config, dataset)
        self.feeds, self.stage, self.domain = {}, None, "target"

    def enter_stage(self, name, domain):
        self.stage, self.domain = name, domain


class TargetItemKNN(BuiltOnTarget, ItemKNN):
    """RecBole's ItemKNN (``k`` neighbours, ``shrink``) on the target's training rows."""


class TargetEASE(BuiltOnTarget, EASE):
    """RecBole's EASE (Steck 2019; ``reg_weight`` is its lambda) on the target's training rows, behind the memory
    guard of :class:`recbole_transfer.model.EASE`."""

    alternative = "TargetItemKNN"


class TargetSLIM(BuiltOnTarget, SLIMElastic):
    """RecBole's SLIMElastic (Ning & Karypis 2011; elastic-net item weights, ``alpha``, ``l1_ratio``) on the target's
    training rows."""


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
        self.register_buffer("item_means", self.shrunk_item_means(dataset, beta)[0])
        self.register_buffer("user_offsets", self.source_offsets(dataset, beta, lam))
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


class TargetPop(BuiltOnTarget, Popularity):
    """The shared popularity baseline (items by their count in the target's training rows), built as the family's
    models are (the pair's links are not needed); ranking only. It needs no history of the user."""

    needs_target_history = False
