"""The overlap family's models, one file each (:mod:`.base` holds what they share)."""

from .base import PairModel, TargetMF
from .baselines import RatingMean, TargetEASE, TargetItemKNN, TargetPop, TargetSLIM
from .catn import CATN
from .cmf import CMF
from .cross import CrossEASE, CrossItemKNN
from .emcdr import EMCDR
from .ptupcdr import PTUPCDR

__all__ = ["CATN", "CMF", "CrossEASE", "CrossItemKNN", "EMCDR", "PTUPCDR", "PairModel", "RatingMean", "TargetEASE", "TargetItemKNN", "TargetMF",
           "TargetPop", "TargetSLIM"]
