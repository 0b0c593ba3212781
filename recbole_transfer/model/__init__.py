"""Models shared by every method: baselines (popularity, RecBole's EASE behind a memory guard) and building blocks. Each method's own models live
in its folder (``recbole_transfer/methods/<name>/``) and are resolved through the registry."""

from .ease import EASE
from .mf import MF
from .popularity import Popularity

__all__ = ["EASE", "MF", "Popularity"]
