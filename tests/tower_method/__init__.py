"""A small transfer method that lives outside the package (the test of "extensible from outside").

TinyTower: user and item embeddings, concatenated, through a two-layer ``tower`` to a score (BCE on sampled
negatives). TowerCopy, its strategy: ``tower`` copies the source's tower and freezes it, ``tower_ft`` copies it
and fine-tunes it, ``none`` trains from scratch. Registered with the ``@method`` decorator; everything else
(CLI, scenario, Ray Tune) comes from the shared floors.
"""

import os

import torch
from recbole.model.abstract_recommender import GeneralRecommender
from recbole.utils import InputType
from torch import nn

from recbole_transfer.errors import TransferConfigError, TransferLayerError, did_you_mean
from recbole_transfer.pipeline import TwoStageRunner
from recbole_transfer.registry import method
from recbole_transfer.report import paired_table, test_metrics
from recbole_transfer.transfer import NO_TRANSFER, TransferReport, TransferStrategy, parameter_counts, trainable_summary

ARMS = (NO_TRANSFER, "tower", "tower_ft")


class TinyTower(GeneralRecommender):
    """Embeddings -> tower (Linear, ReLU, Linear) -> sigmoid score."""

    input_type = InputType.POINTWISE

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        size = config["embedding_size"]
        self.user_embedding = nn.Embedding(self.n_users, size)
        self.item_embedding = nn.Embedding(self.n_items, size)
        self.tower = nn.Sequential(nn.Linear(2 * size, config["tower_width"]), nn.ReLU(), nn.Linear(config["tower_width"], 1))
        self.loss = nn.BCEWithLogitsLoss()
        self.LABEL = config["LABEL_FIELD"]

    def forward(self, user, item):
        return self.tower(torch.cat([self.user_embedding(user), self.item_embedding(item)], dim=-1)).squeeze(-1)

    def calculate_loss(self, interaction):
        return self.loss(self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID]), interaction[self.LABEL])

    def predict(self, interaction):
        return torch.sigmoid(self.forward(interaction[self.USER_ID], interaction[self.ITEM_ID]))


def tables(rows):
    metrics = test_metrics(rows)
    return "\n\n".join(paired_table(rows, m) for m in metrics), metrics[0]


@method("tower_copy", models={"TinyTower": TinyTower}, runner=TwoStageRunner(), folder=os.path.dirname(__file__),
        arms=list(ARMS), tables=tables, description="copy a small tower from source to target (a test plug-in)")
class TowerCopy(TransferStrategy):
    """Copy the source's ``tower``; freeze it (``tower``) or fine-tune it (``tower_ft``)."""

    def __init__(self, arm=NO_TRANSFER):
        self.label = self.arm_label(arm)
        self.loads_source = self.label != NO_TRANSFER

    @classmethod
    def from_config(cls, config):
        return cls(config["transfer"])

    @classmethod
    def arm_label(cls, arm):
        arm = str(arm).strip().lower()
        if arm not in ARMS:
            raise TransferConfigError(f"transfer={arm!r}: unknown{did_you_mean(arm, ARMS)}; allowed: {', '.join(ARMS)}")
        return arm

    def check(self, model, source=None, target=None):
        if model is not None and not hasattr(model, "tower"):
            raise TransferLayerError(f"transfer: {type(model).__name__} has no 'tower'")
        if model is None or source is None:
            return
        for name, param in model.tower.state_dict().items():
            key = f"tower.{name}"
            if key not in source.state_dict or tuple(source.state_dict[key].shape) != tuple(param.shape):
                raise TransferLayerError(f"transfer: source tower parameter {key!r} is missing or has another shape")

    def apply(self, model, source=None, target=None):
        self.require_source(source)
        self.check(model, source, target)
        with torch.no_grad():
            for name, param in model.tower.named_parameters():
                param.copy_(source.state_dict[f"tower.{name}"])
                param.requires_grad_(self.label == "tower_ft")
        rows = [(n, tuple(p.shape), "copied" if n.startswith("tower.") else "trained") for n, p in model.named_parameters()]
        return TransferReport(f"transfer: {self.label}", rows, trainable_summary(model), parameter_counts(model))
