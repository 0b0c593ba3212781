"""Ray Tune: one search driver for every method (:mod:`.search`), its state in the run directory (:mod:`.state`), the
Ray cluster (:mod:`.cluster`), the trials on Ray's side (:mod:`.trials`), choosing the winner (:mod:`.selection`) and
the tables (:mod:`.tables`); search spaces: :mod:`.space`."""

from .search import SearchInterrupted, run_search
from .selection import choose_winner, selection_margin, valid_differences, valid_per_user
from .space import SearchSpace
from .state import SearchState, params_of, trial_seed
from .tables import search_report, summary_table, trial_table

__all__ = ["SearchInterrupted", "SearchSpace", "SearchState", "choose_winner", "params_of", "run_search", "search_report",
           "selection_margin", "summary_table", "trial_seed", "trial_table", "valid_differences", "valid_per_user"]
