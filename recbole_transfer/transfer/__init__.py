"""Transfer strategies and the layer names they act on."""

from .layers import ARMS, NO_TRANSFER, PAPER_CONFIGS, layer_groups, parse_transfer, resolve_layers
from .patches import METHODS, PATCH_ARMS, PatchTransfer, arm_overrides, is_patch_method
from .strategy import LayerTransfer, make_strategy, trainable_summary, uses_patches

__all__ = [
    "ARMS", "NO_TRANSFER", "PAPER_CONFIGS", "layer_groups", "parse_transfer", "resolve_layers",
    "LayerTransfer", "make_strategy", "trainable_summary", "uses_patches",
    "METHODS", "PATCH_ARMS", "PatchTransfer", "arm_overrides", "is_patch_method",
]
