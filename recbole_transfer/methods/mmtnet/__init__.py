"""Contextual invariants (MMT-Net; Krishnan et al. SIGIR 2020, seed 000): one dense source, many sparse targets;
the shared context, clustering and ranking modules move, by annealing or residual adapters."""

import os

from ...pipeline.runner import TwoStageRunner
from ...registry import Method, register
from ...report import best_baseline_table, one_to_many_table, paired_table, test_metrics
from .model import MMTNet
from .strategy import SHARED_ARMS, SharedModuleTransfer


def tables(rows):
    """Per target, macro and wall time (one source, many targets), a paired table per metric, then the best transfer
    arm against the best baseline arm."""
    metrics = test_metrics(rows)
    parts = [one_to_many_table(rows, metrics)] + [paired_table(rows, m) for m in metrics] + [best_baseline_table(rows, metrics[0])]
    return "\n\n".join(p for p in parts if p), metrics[0]


METHOD = register(Method(
    name="mmtnet", models={"MMTNet": MMTNet}, strategy=SharedModuleTransfer, runner=TwoStageRunner(),
    folder=os.path.dirname(os.path.abspath(__file__)), arms=list(SHARED_ARMS) + ["pop", "ItemKNN", "EASE"], tables=tables,
    controls=("random",),
    description="move shared context / clustering / ranking modules to sparse targets (anneal, drr)",
))
