"""Ray Tune search over transfer configurations (see :mod:`recbole_transfer.tune.search`)."""

from .space import DEFAULT_SPACE, SearchSpace
from .search import SearchInterrupted, run_search, summary_table, trial_seed, trial_table

__all__ = ["DEFAULT_SPACE", "SearchInterrupted", "SearchSpace", "run_search", "summary_table", "trial_seed", "trial_table"]
