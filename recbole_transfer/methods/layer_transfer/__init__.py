"""Layer transfer (Nguyen et al. 2020, seed 001): an MLP recommender's layers move from source to target,
frozen or fine-tuned, in the paper's seven configurations. Also the method of every RecBole model that no
method declares (NeuMF, DMF: their interaction layers are declared in ``strategy.RECBOLE_CONTAINERS``)."""

import os

from ...pipeline.runner import TwoStageRunner
from ...registry import Method, register
from ...report import best_baseline_table, paired_table, test_metrics
from .importance import importance_report
from .model import TransferMLP
from .strategy import ARMS, LayerTransfer
from .tables import gain_table


def tables(rows):
    """The paper's Table 3 shape per metric (gain over scratch, validation pick, oracle, KL), the paired table, then the
    best transfer arm against the best baseline arm."""
    metrics = test_metrics(rows)
    parts = [gain_table(rows, m) for m in metrics] + [paired_table(rows, metrics[0]), best_baseline_table(rows, metrics[0])]
    return "\n\n".join(p for p in parts if p), metrics[0]


METHOD = register(Method(
    name="layer_transfer", models={"TransferMLP": TransferMLP}, strategy=LayerTransfer, runner=TwoStageRunner(),
    folder=os.path.dirname(os.path.abspath(__file__)), arms=list(ARMS) + ["pop", "ItemKNN", "EASE"], tables=tables,
    analyses={"importance": importance_report}, default=True,
    description="copy an MLP's layers from source to target, frozen or fine-tuned (config-1..7)",
))
