"""What the command line writes: a scenario's rows (JSON) and tables (Markdown), a search's outcomes and report, each
written only after checking, before any work, that the place can be written."""

import json
import os
import tempfile

from ..errors import TransferError


def check_output(prefix, flag="--output"):
    """Fail before any work when ``<prefix>.*`` cannot be written."""
    if not prefix:
        return
    folder = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(folder, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise TransferError(f"{flag}={prefix!r}: cannot write there ({exc.strerror or exc})") from None


def write_rows(prefix, rows, tables):
    """``<prefix>.json`` (the rows) and ``<prefix>.md`` (the tables)."""
    os.makedirs(os.path.dirname(os.path.abspath(prefix)), exist_ok=True)
    with open(prefix + ".json", "w", encoding="utf-8") as f:
        json.dump(rows, f)
    if tables is not None:
        with open(prefix + ".md", "w", encoding="utf-8") as f:
            f.write(tables + "\n")


def write_search(prefix, outcomes):
    """``<prefix>.json`` (a search's outcomes: every trial row, the winners, their test metrics) and ``<prefix>.md``
    (:func:`~recbole_transfer.tune.tables.search_report` of them, which rebuilds it from the JSON)."""
    from ..tune.tables import search_report  # Ray is imported when a search runs, not by every command

    with open(prefix + ".json", "w", encoding="utf-8") as f:
        json.dump(outcomes, f, default=str)
    with open(prefix + ".md", "w", encoding="utf-8") as f:
        f.write(search_report(outcomes))
