"""Scenario runner: one source pretrained once, several targets and arms, the Table 3 output."""

import pytest

from recbole_transfer.pipeline import scenario as scenario_module
from recbole_transfer.pipeline.scenario import run_scenario
from recbole_transfer.pipeline.parallel import comparable
from recbole_transfer.methods.layer_transfer.tables import gain_table
from recbole_transfer.report import metric_table


def test_scenario_pretrains_once_and_reports_every_target_and_arm(small_domains, monkeypatch):
    calls = []
    real = scenario_module.pretrain
    monkeypatch.setattr(scenario_module, "pretrain", lambda *a, **k: calls.append(a) or real(*a, **k))
    messages = []
    config = dict(small_domains)
    rows = run_scenario("TransferMLP", "src", ["tgt", "src"], None, config, arms=["none", "config-1", "[fc4]"],
                        progress=messages.append)
    assert len(calls) == 1
    assert [(r["target"], r["arm"]) for r in rows] == [
        (t, a) for t in ("tgt", "src") for a in ("none", "config-1", "fc4")
    ]
    assert sum(m.startswith("[") for m in messages) == 6 and "[6/6]" in messages[-1]
    table = gain_table(rows)
    header, _, first, second = table.splitlines()[2:6]
    assert "scratch HR@10" in header and "config-1" in header and "KL(S||T)" in header
    assert first.split("|")[1].strip() == "tgt" and second.split("|")[1].strip() == "src"
    # Transferring to the source itself: relatedness 0.
    assert float(second.split("|")[-2]) == 0.0
    scratch = next(r["test_hit@10"] for r in rows if r["target"] == "tgt" and r["arm"] == "none")
    config1 = next(r["test_hit@10"] for r in rows if r["target"] == "tgt" and r["arm"] == "config-1")
    expected = f"{100 * (config1 - scratch) / scratch:+.1f}" if scratch else "-"
    assert expected in first
    assert "± " in metric_table(rows)


def test_same_seed_same_metrics(small_domains):
    config = dict(small_domains)
    first = run_scenario("TransferMLP", "src", ["tgt"], None, config, arms=["none", "config-6"])
    second = run_scenario("TransferMLP", "src", ["tgt"], None, config, arms=["none", "config-6"])
    assert [r["test_hit@10"] for r in first] == [r["test_hit@10"] for r in second]
    assert [r["test_ndcg@10"] for r in first] == [r["test_ndcg@10"] for r in second]


def test_tables_pair_arms_user_by_user_and_label_the_oracle(small_domains, tmp_path):
    import numpy as np

    from recbole_transfer.report import forest_plot, paired_table, validation_picks

    rows = run_scenario("TransferMLP", "src", ["tgt"], None, dict(small_domains), arms=["none", "config-1", "config-6"],
                        seeds=[1, 2])
    by = {(r["seed"], r["arm"]): r for r in rows}
    users = {}  # each user's differences over the seeds that tested her (leave-one-out: every user, every seed)
    for s in (1, 2):
        diffs = np.subtract(by[(s, "config-1")]["test_per_user"]["hit@10"], by[(s, "none")]["test_per_user"]["hit@10"])
        for user, d in zip(by[(s, "none")]["test_users"], diffs):
            users.setdefault(user, []).append(d)
    expected = np.mean([np.mean(d) for d in users.values()])
    assert f"{expected:+.4f} [" in paired_table(rows).splitlines()[4].split("|")[2]
    picks = validation_picks(rows, "tgt")
    for seed, pick in picks.items():  # the arm a user would deploy: best validation score of its seed
        assert pick["valid_hit@10"] == max(r["valid_hit@10"] for r in rows if r["seed"] == seed)
    table = gain_table(rows)
    assert "oracle arm (test-selected)" in table and "an upper bound on any per-seed choice, not a finding" in table
    header, _, cells = [[c.strip() for c in line.split("|")] for line in table.splitlines()[2:5]]
    assert cells[header.index("its HR@10")] == f"{np.mean([p['test_hit@10'] for p in picks.values()]):.4f}"
    best_test = {s: max(r["test_hit@10"] for r in rows if r["seed"] == s) for s in (1, 2)}  # the per-seed oracle
    assert cells[header.index("oracle HR@10")] == f"{np.mean(list(best_test.values())):.4f}"
    assert float(cells[header.index("oracle HR@10")]) >= float(cells[header.index("its HR@10")])  # a true upper bound
    png = forest_plot(rows, str(tmp_path / "forest.png"))
    assert open(png, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_paired_difference_interval():
    import numpy as np

    from recbole_transfer.stats import paired_difference

    constant = paired_difference([np.full(50, 0.1)])
    assert constant.mean == pytest.approx(0.1) and constant.low == pytest.approx(0.1) == constant.high
    assert constant.excludes_zero
    balanced = np.random.default_rng(0).permutation(np.array([-1.0, 1.0] * 200))  # mean 0, sd 1
    noise = paired_difference([balanced])
    assert noise.low < 0 < noise.high and not noise.excludes_zero and noise.n == 400
    assert noise.se == pytest.approx(balanced.std(ddof=1) / 20) and noise.high - noise.low == pytest.approx(4 * noise.se, rel=0.1)
    shifted = paired_difference([balanced + 0.5])
    assert shifted.low > 0 and "*" in shifted.cell()
    macro = paired_difference([np.full(10, 0.2), np.full(1000, 0.0)])  # targets weigh equally
    assert macro.mean == pytest.approx(0.1) and macro.n == 1010


def same_rows(parallel, sequential):
    """Equal rows, but for wall times and checkpoint paths (a validation curve: its epochs and scores)."""
    assert len(parallel) == len(sequential)
    for a, b in zip(parallel, sequential):
        assert comparable(a) == comparable(b), (a.get("target"), a.get("arm"), b.get("target"), b.get("arm"))


@pytest.mark.ray
@pytest.mark.slow
def test_workers_give_the_sequential_scenarios_rows_in_its_order(small_domains):
    """``--workers``: every (seed, arm) of a two-stage scenario as a Ray task, the source trained once per seed and
    loaded by that seed's units; the rows equal the sequential run's, in its order (seed, target, arm)."""
    from recbole_transfer.pipeline.parallel import run_parallel
    from recbole_transfer.request import Request

    keys = {**small_domains, "epochs": 2}
    arms, seeds = ["none", "config-1", "pop"], [1, 2]
    sequential = run_scenario("TransferMLP", "src", ["tgt", "src"], None, keys, arms=arms, seeds=seeds)
    request = Request("TransferMLP", "src", ["tgt", "src"], (), keys)
    lines = []
    parallel = run_parallel(request.method, request, arms, seeds, workers=2, progress=lines.append)
    same_rows(parallel, sequential)
    assert [(r["seed"], r["target"], r["arm"]) for r in parallel][:3] == [(1, "tgt", "none"), (1, "tgt", "config-1"),
                                                                          (1, "tgt", "pop")]
    assert sum(line.startswith("seed ") and "prepared once" in line for line in lines) == 2


def test_units_of_one_seed_share_what_they_build_in_a_worker_up_to_the_row_budget(monkeypatch):
    """``parallel.shared``: outside a unit every call builds; inside one, a key is built once per run and seed (a
    unit of another seed starts afresh), and a value past ``SHARED_ROWS`` is rebuilt each time rather than kept."""
    from recbole_transfer.pipeline import parallel

    built = []
    make = lambda name, size: (lambda: built.append(name) or {"name": name, "size": size})  # noqa: E731
    rows = lambda value: value["size"]  # noqa: E731
    assert parallel.shared("a", make("a", 1), rows) is not parallel.shared("a", make("a", 1), rows)
    monkeypatch.setattr(parallel, "SHARED_ROWS", 10)
    monkeypatch.setattr(parallel, "_shared", {"scope": "run, seed 1", "items": {}, "rows": 0})
    first = parallel.shared("a", make("a", 4), rows)
    assert parallel.shared("a", make("a", 4), rows) is first
    parallel.shared("big", make("big", 7), rows)
    parallel.shared("big", make("big", 7), rows)
    assert built == ["a", "a", "a", "big", "big"]
    parallel._shared["scope"] = "run, seed 2"  # what _unit_task sets for a unit of another seed clears the rest
    monkeypatch.setattr(parallel, "Request", lambda *a: (_ for _ in ()).throw(RuntimeError("stop")))
    with pytest.raises(RuntimeError, match="stop"):
        parallel._unit_task({"model": "m", "source": None, "targets": [], "config_files": [], "config_dict": {}},
                            "arm", 3, False)
    assert parallel._shared["items"] == {} and parallel._shared["rows"] == 0
    parallel.shared("a", make("a", 4), rows)
    assert built[-1] == "a" and len(built) == 6
