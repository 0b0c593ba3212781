"""Transfer strategies and the layer names they act on."""

from .layers import ARMS, NO_TRANSFER, PAPER_CONFIGS, layer_groups, parse_transfer, resolve_layers
from .strategy import LayerTransfer, trainable_summary

__all__ = [
    "ARMS", "NO_TRANSFER", "PAPER_CONFIGS", "layer_groups", "parse_transfer", "resolve_layers",
    "LayerTransfer", "trainable_summary",
]
