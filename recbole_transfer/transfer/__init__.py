"""Transfer strategies and the layer names they act on."""

from .layers import ARMS, NO_TRANSFER, PAPER_CONFIGS, layer_groups, parse_transfer, resolve_layers
from .patches import METHODS, PATCH_ARMS, PatchTransfer, arm_overrides, is_patch_method
from .strategy import LayerTransfer, make_strategy, trainable_summary, uses_patches, uses_shared_modules
from .invariants import SHARED_ARMS, SHARED_METHODS, SharedModuleTransfer, is_shared_method

__all__ = [
    "ARMS", "NO_TRANSFER", "PAPER_CONFIGS", "layer_groups", "parse_transfer", "resolve_layers",
    "LayerTransfer", "make_strategy", "trainable_summary", "uses_patches",
    "METHODS", "PATCH_ARMS", "PatchTransfer", "arm_overrides", "is_patch_method",
    "uses_shared_modules", "SHARED_ARMS", "SHARED_METHODS", "SharedModuleTransfer", "is_shared_method",
]
