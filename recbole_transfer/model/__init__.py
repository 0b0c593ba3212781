"""Models shared by every method: baselines (popularity) and building blocks. Each method's own models live
in its folder (``recbole_transfer/methods/<name>/``) and are resolved through the registry."""

from .mf import MF
from .popularity import Popularity

__all__ = ["MF", "Popularity"]
