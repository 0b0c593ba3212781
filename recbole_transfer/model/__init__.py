"""Models shipped by recbole_transfer (resolved by name before RecBole's own)."""

from .bag_of_items import BagOfItems
from .mf import MF
from .mmtnet import MMTNet
from .peterrec import PeterRec
from .popularity import Popularity
from .sml import SML
from .transfer_mlp import TransferMLP

__all__ = ["BagOfItems", "MF", "MMTNet", "PeterRec", "Popularity", "SML", "TransferMLP"]
