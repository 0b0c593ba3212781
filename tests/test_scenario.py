"""Scenario runner: one source pretrained once, several targets and arms, the Table 3 output."""

from recbole_transfer import scenario as scenario_module
from recbole_transfer.scenario import gain_table, metric_table, run_scenario


def test_scenario_pretrains_once_and_reports_every_target_and_arm(small_domains, monkeypatch):
    calls = []
    real = scenario_module.pretrain_source
    monkeypatch.setattr(scenario_module, "pretrain_source", lambda *a, **k: calls.append(a) or real(*a, **k))
    messages = []
    config = {**small_domains, "eval_seed": 1}
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
    config = {**small_domains, "eval_seed": 1}
    first = run_scenario("TransferMLP", "src", ["tgt"], None, config, arms=["none", "config-6"])
    second = run_scenario("TransferMLP", "src", ["tgt"], None, config, arms=["none", "config-6"])
    assert [r["test_hit@10"] for r in first] == [r["test_hit@10"] for r in second]
    assert [r["test_ndcg@10"] for r in first] == [r["test_ndcg@10"] for r in second]
