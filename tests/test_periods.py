"""Time periods for periodic retraining (SML): exact assignment, the period table, clear errors."""

import numpy as np
import pytest
from recbole.data import create_dataset

from recbole_transfer.config import TransferConfig
from recbole_transfer.data.periods import assign_periods, dataset_periods, period_table
from recbole_transfer.errors import TransferConfigError, TransferDataError


@pytest.mark.parametrize("by", ["interactions", "time"])
def test_every_interaction_in_exactly_one_period_in_time_order(by):
    rng = np.random.default_rng(0)
    ts = np.round(rng.gamma(0.5, 1000.0, size=5000))  # bursty, with ties
    period = assign_periods(ts, 7, by)
    assert period.shape == ts.shape and set(period.tolist()) == set(range(7))
    order = np.argsort(ts, kind="stable")
    assert (np.diff(period[order]) >= 0).all()  # time order kept: no later interaction in an earlier period
    counts = np.bincount(period)
    if by == "interactions":
        assert counts.max() - counts.min() <= 1
    else:
        edges = np.linspace(ts.min(), ts.max(), 8)
        for p in range(7):
            inside = ts[period == p]
            assert inside.min() >= edges[p] and (inside.max() < edges[p + 1] or p == 6)


def test_too_many_periods_bad_arguments_and_empty_spans_are_errors():
    with pytest.raises(TransferDataError, match="only 3 distinct timestamps"):
        assign_periods([1, 1, 2, 3, 3], 4)
    with pytest.raises(TransferConfigError, match="integer >= 2"):
        assign_periods([1, 2, 3], 1)
    with pytest.raises(TransferConfigError, match="interactions, time"):
        assign_periods([1, 2, 3], 2, by="weeks")
    with pytest.raises(TransferDataError, match="period 1 .* has no interaction"):
        assign_periods([0, 1, 2, 100], 3, by="time")


def test_period_table_counts_new_users_and_items():
    rows = period_table(users=[1, 1, 2, 2, 3], items=[10, 11, 10, 12, 12], timestamps=[0, 1, 2, 3, 4],
                        period=np.array([0, 0, 1, 1, 1]))
    assert [r["interactions"] for r in rows] == [2, 3]
    assert (rows[1]["users"], rows[1]["new_users"], rows[1]["items"], rows[1]["new_items"]) == (2, 2, 2, 1)  # users 2 and 3 are new; item 10 was seen


def test_dataset_without_time_field_is_refused(tmp_path):
    folder = tmp_path / "notime"
    folder.mkdir()
    (folder / "notime.inter").write_text("user_id:token\titem_id:token\n" + "".join(f"u{k % 7}\ti{k}\n" for k in range(40)))
    config = TransferConfig("Popularity", "notime", None, {"data_path": str(tmp_path)})
    with pytest.raises(TransferDataError, match="has no time field"):
        dataset_periods(create_dataset(config), 4)


def test_cli_prints_the_period_table_of_ml100k(workdir, run_cli):
    code, out, err = run_cli(["--show_periods", "--dataset=ml-100k", "--periods=8"])
    assert code == 0, err[-2000:]
    rows = [line.split("|")[1:-1] for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert len(rows) == 8 and sum(int(r[3]) for r in rows) == 100000
    assert rows[0][1].strip().startswith("1997-09-20") and rows[-1][2].strip().startswith("1998-04-22")
    assert sum(int(r[6]) for r in rows) == 943  # every user is new exactly once
    code, _out, err = run_cli(["--show_periods", "--dataset=ml-100k", "--periods=200000"])
    assert code == 2 and "distinct timestamps" in err and "Traceback" not in err
