"""Models shipped by recbole_transfer (resolved by name before RecBole's own)."""

from .bag_of_items import BagOfItems
from .peterrec import PeterRec
from .popularity import Popularity
from .transfer_mlp import TransferMLP

__all__ = ["BagOfItems", "PeterRec", "Popularity", "TransferMLP"]
