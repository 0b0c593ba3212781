"""The overlap family's models, one file each (:mod:`.base` holds what they share)."""

from .base import PairModel, TargetMF
from .baselines import RatingMean, TargetPop
from .catn import CATN
from .cmf import CMF
from .emcdr import EMCDR
from .ptupcdr import PTUPCDR

__all__ = ["CATN", "CMF", "EMCDR", "PTUPCDR", "PairModel", "RatingMean", "TargetMF", "TargetPop"]
