"""SML (Zhang et al. SIGIR 2020, seed 002): sequential meta-learning for periodic retraining, against full
retraining, fine-tuning, sample-based retraining and popularity, evaluated online period after period."""

import os

from ...registry import Method, register
from .model import SML
from .retraining import RETRAIN_METHODS
from .runner import PeriodicRunner

METHOD = register(Method(
    name="sml", models={"SML": SML}, runner=PeriodicRunner(),
    folder=os.path.dirname(os.path.abspath(__file__)), arms=list(RETRAIN_METHODS),
    description="periodic retraining with a transfer network trained for the next period",
))
