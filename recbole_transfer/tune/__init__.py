"""Ray Tune: one search driver for every method (see :mod:`recbole_transfer.tune.search`)."""

from .search import SearchInterrupted, run_search, summary_table, trial_seed, trial_table
from .space import SearchSpace

__all__ = ["SearchInterrupted", "SearchSpace", "run_search", "summary_table", "trial_seed", "trial_table"]
