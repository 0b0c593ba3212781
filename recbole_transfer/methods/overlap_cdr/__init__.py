"""Cross-domain recommendation for users in both domains: CMF, EMCDR, PTUPCDR, CATN and their baselines (:mod:`.models`),
on a domain pair (:mod:`.pair`; review documents: :mod:`.documents`), with the warm and cold-start protocols, ranking
and rating tasks, and stage schedules (:mod:`.stages`), run by :mod:`.runner`."""

import os

from ...registry import Method, register
from .models import CATN, CMF, CrossEASE, CrossItemKNN, EMCDR, PTUPCDR, RatingMean, TargetEASE, TargetItemKNN, TargetMF, TargetPop, TargetSLIM
from .runner import ARMS, PairRunner

METHOD = register(Method(
    name="overlap_cdr", models={"CMF": CMF, "EMCDR": EMCDR, "PTUPCDR": PTUPCDR, "TargetMF": TargetMF, "RatingMean": RatingMean,
            "TargetPop": TargetPop, "CATN": CATN, "TargetEASE": TargetEASE, "TargetItemKNN": TargetItemKNN, "TargetSLIM": TargetSLIM,
            "CrossEASE": CrossEASE, "CrossItemKNN": CrossItemKNN},
    runner=PairRunner(), folder=os.path.dirname(os.path.abspath(__file__)), arms=list(ARMS), baseline="TargetMF",
    data_keys=frozenset({"protocol", "eta", "cold_share", "cold_valid_share", "overlap_link", "task", "eval_domains",
                         "source_rows"}),
    description="users in both domains: CMF, EMCDR, PTUPCDR, CrossEASE, CrossItemKNN (warm and cold-start protocols, ranking and rating)",
))
