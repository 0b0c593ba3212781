"""Models shipped by recbole_transfer (resolved by name before RecBole's own)."""

from .transfer_mlp import TransferMLP

__all__ = ["TransferMLP"]
