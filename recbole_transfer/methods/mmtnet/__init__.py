"""Contextual invariants (MMT-Net; Krishnan et al. SIGIR 2020, seed 000): one dense source, many sparse targets;
the shared context, clustering and ranking modules move, by annealing or residual adapters."""

import os

from ...pipeline.runner import TwoStageRunner
from ...registry import Method, register
from ...report import one_to_many_table, paired_table, test_metrics
from .model import MMTNet
from .strategy import SHARED_ARMS, SharedModuleTransfer


def tables(rows):
    """Per target, macro and wall time (one source, many targets), then a paired table per metric."""
    metrics = test_metrics(rows)
    return "\n\n".join([one_to_many_table(rows, metrics)] + [paired_table(rows, m) for m in metrics]), metrics[0]


METHOD = register(Method(
    name="mmtnet", models={"MMTNet": MMTNet}, strategy=SharedModuleTransfer, runner=TwoStageRunner(),
    folder=os.path.dirname(os.path.abspath(__file__)), arms=list(SHARED_ARMS), tables=tables,
    description="move shared context / clustering / ranking modules to sparse targets (anneal, drr)",
))
