"""Time periods of a RecBole dataset: the D_0, D_1, ..., D_{T-1} of periodic retraining.

``assign_periods`` gives every interaction exactly one period, from its timestamp:

- ``by: interactions`` (default): interactions sorted by time (ties kept in file order) are cut into T
  consecutive runs of equal size (sizes differ by at most one). Suits bursty data such as ml-100k, where
  users rate many films within minutes of signing up.
- ``by: time``: T equal spans of [first timestamp, last timestamp]; the last span includes its end.

``period_table`` describes the split: time range, interactions, users, items, and the users and items
first seen in each period (those have no trained embedding yet when that period arrives).

Bad input is a :class:`TransferDataError` / :class:`TransferConfigError` naming the problem: no time field,
fewer distinct timestamps than periods, an equal-span period with no interaction.
"""

import datetime

import numpy as np

from .. import keys
from ..errors import TransferConfigError, TransferDataError
from ..report import markdown

def check_period_args(periods, by):
    """``periods`` and ``period_by`` as their keys declare them (properties/overall.yaml)."""
    if periods is None:
        raise TransferConfigError("periods: give the number of time periods, e.g. --periods=10")
    keys.check({"periods": periods, "period_by": by})


def assign_periods(timestamps, periods, by="interactions", dataset="dataset"):
    """Period index (0..periods-1) of every interaction, in the input order. Raises on bad input."""
    check_period_args(periods, by)
    ts = np.asarray(timestamps, dtype=np.float64)
    distinct = np.unique(ts).size
    if distinct < periods:
        raise TransferDataError(
            f"periods={periods}: {dataset!r} has only {distinct} distinct timestamp{'s' if distinct != 1 else ''} "
            f"({ts.size} interactions); at most {distinct} periods are possible"
        )
    if by == "interactions":
        order = np.argsort(ts, kind="stable")
        out = np.empty(ts.size, dtype=np.int64)
        out[order] = np.arange(ts.size) * periods // ts.size
        return out
    edges = np.linspace(ts.min(), ts.max(), periods + 1)
    out = np.clip(np.searchsorted(edges, ts, side="right") - 1, 0, periods - 1)
    counts = np.bincount(out, minlength=periods)
    if (counts == 0).any():
        empty = int(np.flatnonzero(counts == 0)[0])
        raise TransferDataError(
            f"periods={periods}, period_by=time: period {empty} of {dataset!r} "
            f"({_date(edges[empty])} .. {_date(edges[empty + 1])}) has no interaction; use fewer periods or "
            f"period_by=interactions"
        )
    return out


def dataset_periods(dataset, periods, by="interactions"):
    """Period index of every interaction of a RecBole dataset (its ``inter_feat`` rows, in order)."""
    time_field = dataset.time_field
    if not time_field or time_field not in dataset.inter_feat:
        raise TransferDataError(
            f"periods: dataset {dataset.dataset_name!r} has no time field (TIME_FIELD={time_field!r}); periodic "
            f"retraining needs a timestamp per interaction (load it with load_col, e.g. inter: [user_id, item_id, timestamp])"
        )
    column = dataset.inter_feat[time_field]
    values = column.numpy() if hasattr(column, "numpy") else column.to_numpy()
    return assign_periods(values, periods, by, dataset.dataset_name)


def period_table(users, items, timestamps, period):
    """Rows per period: start, end, interactions, users, items, new users, new items (first seen there)."""
    users, items = np.asarray(users), np.asarray(items)
    ts, period = np.asarray(timestamps, dtype=np.float64), np.asarray(period)
    seen_users, seen_items, rows = set(), set(), []
    for p in range(int(period.max()) + 1):
        mask = period == p
        u, i = set(users[mask].tolist()), set(items[mask].tolist())
        rows.append({
            "period": p, "start": _date(ts[mask].min()), "end": _date(ts[mask].max()),
            "interactions": int(mask.sum()), "users": len(u), "items": len(i),
            "new_users": len(u - seen_users), "new_items": len(i - seen_items),
        })
        seen_users |= u
        seen_items |= i
    return rows


def format_period_table(rows):
    keys = ["period", "start", "end", "interactions", "users", "items", "new_users", "new_items"]
    return markdown([k.replace("_", " ") for k in keys], [[r[k] for k in keys] for r in rows])


def _date(seconds):
    return datetime.datetime.fromtimestamp(float(seconds), tz=datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
