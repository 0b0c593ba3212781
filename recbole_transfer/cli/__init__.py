"""Command line of recbole_transfer (``run_recbole_transfer.py`` and the ``recbole-transfer`` script): its grammar
(:mod:`.parser`), the commands that train (:mod:`.commands`: one run, a scenario, a search), those that only look
(:mod:`.views`: a checkpoint, periods, an overlap, review files) and what they write (:mod:`.outputs`)."""

from .commands import main
from .parser import build_parser, parse_command, parse_extra, parse_seeds

__all__ = ["build_parser", "main", "parse_command", "parse_extra", "parse_seeds"]
