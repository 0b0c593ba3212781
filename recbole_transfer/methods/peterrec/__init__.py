"""PeterRec (Yuan et al. SIGIR 2020, seed 003): a pretrained NextItNet with grafted model patches, fine-tuned on
cold-start recommendation and user-profile tasks."""

import os

from ...pipeline.runner import TwoStageRunner
from ...registry import Method, register
from ...report import best_baseline_table
from .bag_of_items import BagOfItems
from .model import PeterRec
from .strategy import PATCH_ARMS, PatchTransfer
from .tables import method_paired_table, method_table


def tables(rows):
    """The paper's Table 3 shape (method x task, trainable parameters), then the paired table; the plot uses each
    task's own metric; last, the best transfer arm against the best baseline arm, per task."""
    best = best_baseline_table(rows)
    return method_table(rows) + "\n\n" + method_paired_table(rows) + ("\n\n" + best if best else ""), None


METHOD = register(Method(
    name="peterrec", models={"PeterRec": PeterRec, "BagOfItems": BagOfItems}, strategy=PatchTransfer,
    runner=TwoStageRunner(), folder=os.path.dirname(os.path.abspath(__file__)), arms=list(PATCH_ARMS),
    baseline="peterzero/serial",  # the same patches on a network never pretrained: what pretraining must beat
    baseline_models={"bag": "BagOfItems"}, tables=tables,
    description="patches grafted into a pretrained NextItNet, fine-tuned per task",
))
