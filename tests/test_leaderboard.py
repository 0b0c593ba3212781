"""Strong baselines and the leaderboard: traditional models train once, baseline arms that cannot score a target are
refused with their reason, bad leaderboard input exits 2 before anything trains, validation (never test) picks the
best baseline and the best transfer, and one small leaderboard runs end to end through Ray on the bundled pair."""

import json
import os
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from recbole_transfer.errors import TransferConfigError
from recbole_transfer.keys import read_yaml
from recbole_transfer.pipeline import transfer
from recbole_transfer.request import Request
from recbole_transfer.pipeline.parallel import comparable
from recbole_transfer.tune.leaderboard import _row as leaderboard_row
from recbole_transfer.tune.leaderboard import (BEST, best_rows, check_arm, check_budget, families, leaderboard_table,
                                               load_plan, model_reads, run_leaderboard)


# ----- traditional models train once -------------------------------------------------------------------------------
@pytest.mark.slow
def test_ease_trains_once_whatever_epochs(workdir):
    # as the command line builds it: the default method's scenario declares the derived domain 'action'
    request = Request.command("EASE", None, ["action"], [], {"epochs": 7, "seed": 2020})
    result = transfer(request, saved=True, verbose=False)
    assert result["epochs_run"] == 1
    assert result["test_result"]["hit@10"] > 0.3  # a real model, not a no-op: far above chance on ~200 items


# ----- baseline arms that cannot run are refused, with their reason -------------------------------------------------
def test_ease_refused_on_targets_without_user_history(run_cli, workdir):
    code, _out, err = run_cli(["--model=PeterRec", "--scenario", "--targets=[coldrec,gender]", "--arms=[pop,EASE]"])
    assert code == 2 and "EASE cannot score target 'coldrec'" in err and "user_holdout" in err, err
    assert not list(workdir.rglob("*.pth"))  # refused before the source stage trains


def test_overlap_ease_refused_under_cold_start(run_cli, workdir):
    code, _out, err = run_cli(["--model=TargetEASE", "--protocol=cold_start"])
    assert code == 2 and "(cold) users have none" in err and "use pop" in err


# ----- bad leaderboard input: exit 2 in seconds, with the valid names ----------------------------------------------
@pytest.mark.parametrize("args, expected", [
    (["--leaderboard", "--families=overlapcdr"], "did you mean 'overlap_cdr'"),
    (["--leaderboard", "--families=overlap_cdr", "--arms=[EASY]"], "did you mean 'EASE'"),
    (["--leaderboard", "--epochs=3"], "--epochs not taken"),
    (["--leaderboard", "--budget=0"], "--budget=0: must be >= 1"),
    (["--families=mmtnet"], "give --leaderboard"),
    (["--leaderboard", "--tune"], "--tune not taken"),
    (["--leaderboard", "--num_samples=3", "--verbose"], "--verbose, --num_samples not taken"),
    (["--leaderboard", "--arms=[]"], "--arms='[]': no arm given"),
    (["--leaderboard", "--seeds=[2020,2020]"], "seed 2020 given twice"),
    (["--leaderboard", "--leaderboard_plan=plan.yaml"], "give the one family it is a plan of"),
    (["--leaderboard", "--families=mmtnet", "--leaderboard_plan=nofile.yaml"], "no such file"),
    (["--leaderboard", "--families=mmtnet", "--budget=3"], "--budget=3 differs from the plan's"),
    (["--leaderboard", "--workers=0"], "--workers=0: must be >= 1"),
    (["--leaderboard", "--workers=2", "--num_cpus=2"], "--num_cpus: give it without --workers and --ray_address"),
    (["--leaderboard", "--num_cpus=2", "--ray_address=127.0.0.1:1"], "--num_cpus: give it without"),
    (["--leaderboard", "--families=mmtnet", "--ray_address=nohost"], "expected host:port"),
    (["--leaderboard", "--families=mmtnet", "--ray_address="], "ray_address='': expected host:port"),
])
def test_bad_leaderboard_input_exits_2(run_cli, workdir, args, expected):
    code, _out, err = run_cli(args)
    assert code == 2 and expected in err, err


def test_space_key_the_model_does_not_read_is_refused():
    with pytest.raises(TransferConfigError, match="EASE does not read 'learning_rate' \\(it is built, not trained\\).*reg_weight"):
        check_arm("plan.yaml", "EASE", {"kind": "baseline", "model": "EASE",
                                        "space": {"learning_rate": {"type": "grid", "values": [0.1, 0.01]}}})
    assert "k" in model_reads("ItemKNN") and "learning_rate" not in model_reads("ItemKNN")
    assert {"learning_rate", "embedding_size"} <= model_reads("TransferMLP")


def test_every_arm_runs_the_budget_at_every_seed():
    grid = check_arm("plan.yaml", "EASE", {"kind": "baseline", "model": "EASE",
                                           "space": {"reg_weight": {"type": "grid", "values": [1.0, 2.0, 3.0]}}})
    with pytest.raises(TransferConfigError, match="3 trials at seed 0, but every arm with a space runs budget=4"):
        check_budget("plan.yaml", grid, 4, [0])
    check_budget("plan.yaml", grid, 3, [0, 1, 2])  # a grid of 3 points: 3 trials at every seed
    # three draws from two values repeat at some seed: the search would run fewer trials than the budget
    drawn = check_arm("plan.yaml", "ItemKNN", {"kind": "baseline", "model": "ItemKNN",
                                               "space": {"k": {"type": "choice", "values": [10, 20]}}})
    with pytest.raises(TransferConfigError, match="trials at seed 2020, but every arm with a space runs budget=3"):
        check_budget("plan.yaml", drawn, 3, [2020])


def test_bad_arms_are_refused():
    with pytest.raises(TransferConfigError, match="kind: 'other'"):
        check_arm("plan.yaml", "x", {"kind": "other", "model": "EASE"})
    with pytest.raises(TransferConfigError, match="arms.x.model: model='NoSuchModel': unknown model"):
        check_arm("plan.yaml", "x", {"kind": "baseline", "model": "NoSuchModel"})
    with pytest.raises(TransferConfigError, match="arms.x: a baseline arm trains without transfer"):
        check_arm("plan.yaml", "x", {"kind": "baseline", "model": "TransferMLP", "keys": {"transfer": "config-1"}})
    with pytest.raises(TransferConfigError, match="transfer='none' is a baseline configuration"):
        check_arm("plan.yaml", "x", {"kind": "transfer", "model": "TransferMLP",
                                     "space": {"transfer": {"type": "grid", "values": ["config-1", "none"]}}})
    # a method's own baseline configuration in a baseline arm is fine (PeterRec's patches on a network never pretrained)
    assert check_arm("plan.yaml", "scratch", {"kind": "baseline", "model": "PeterRec",
                                              "keys": {"transfer": "peterzero", "patch_position": "serial"}}).kind == "baseline"


@pytest.mark.slow
def test_every_shipped_plan_loads_with_both_kinds():
    names = [m.name for m in families()]
    assert {"layer_transfer", "mmtnet", "overlap_cdr", "peterrec", "sml"} <= set(names)
    for method in families():
        plan = load_plan(method)
        assert {a.kind for a in plan.arms} == {"baseline", "transfer"}
        popularity = [a for a in plan.arms if a.model in ("Popularity", "TargetPop") or a.keys.get("retrain_methods") == ["pop"]]
        assert popularity  # popularity in every family
    overlap = next(m for m in families() if m.name == "overlap_cdr")
    rating = load_plan(overlap, path=overlap.file("leaderboard.rating.yaml"))  # the rating task's plan, shipped apart
    assert {a.kind for a in rating.arms} == {"baseline", "transfer"} and rating.keys["task"] == "rating"
    assert {"item_mean_offset", "TargetMF", "CMF", "EMCDR", "PTUPCDR"} <= {a.name for a in rating.arms}


def test_an_sml_arm_runs_one_method_and_tunes_only_its_keys(workdir):
    """Every bad SML arm is refused when the plan loads (before Ray starts or anything trains), naming the arm."""
    sml = next(m for m in families() if m.name == "sml")
    plan = read_yaml(sml.file("leaderboard.yaml"))
    grid = lambda *values: {"type": "grid", "values": list(values)}  # noqa: E731
    ease = {"kind": "baseline", "model": "SML", "keys": {"retrain_methods": ["ease"]}}
    for arm, error in (({"kind": "baseline", "model": "SML", "keys": {"retrain_methods": ["pop", "ease"]}},
                        "arms.two: retrain_methods=\\['pop', 'ease'\\]: a leaderboard arm runs one method"),
                       ({**ease, "space": {"sml_lr": grid(0.1, 0.2, 0.3, 0.4)}},
                        "arms.two: space key 'sml_lr': retrain method 'ease' does not read it.*the keys it reads: "
                        "ease_reg_weight"),
                       ({**ease, "space": {"ease_reg_weight": grid(-1.0, 1.0, 2.0, 3.0)}},  # a value out of range
                        "arms.two: ease_reg_weight=-1.0"),
                       ({**ease, "keys": {"retrain_methods": ["ease"], "test_periods": 3}},  # another protocol
                        "arms.two: key 'test_periods': retrain method 'ease' does not read it"),
                       ({**ease, "keys": {"retrain_methods": ["ease"], "ease_reg_wieght": 3.0}},
                        "arms.two: .*ease_reg_wieght.*did you mean 'ease_reg_weight'"),
                       ({**ease, "kind": "transfer"}, "arms.two: kind 'transfer' with retrain method 'ease': SML is "
                                                      "the transfer arm"),
                       ({"kind": "baseline", "model": "SML", "keys": {"retrain_methods": ["sml"]}},
                        "arms.two: kind 'baseline' with retrain method 'sml'")):
        arms = {"pop": plan["arms"]["pop"], "sml": plan["arms"]["sml"], "two": arm}  # the plan's others load as shipped
        (workdir / "plan.yaml").write_text(yaml.safe_dump({**plan, "arms": arms}))
        with pytest.raises(TransferConfigError, match=error):
            load_plan(sml, path=str(workdir / "plan.yaml"))


def test_a_finished_arm_resumes_and_an_arm_whose_trials_all_failed_runs_again(tmp_path):
    from recbole_transfer.tune.leaderboard import _arm_key, _finished

    folder, scenario = tmp_path / "method", tmp_path / "scenario.yaml"
    folder.mkdir()
    (folder / "EASE.yaml").write_text("reg_weight: 250.0\n")
    scenario.write_text("targets: [t]\n")
    plan = SimpleNamespace(budget=4, method=SimpleNamespace(folder=str(folder)))
    arm = SimpleNamespace(name="EASE", kind="baseline", model="EASE")
    request = SimpleNamespace(config_dict={"seed": 1}, targets=("t",), config_files=(str(scenario),))
    path = tmp_path / "leaderboard-rows.json"
    assert _finished(str(tmp_path), plan, arm, request) is None  # nothing saved
    for rows, resumed in (([{"target": "t", "test": 0.5}], True), ([{"target": "t", "test": None}], False)):
        path.write_text(json.dumps({"key": _arm_key(plan, arm, request), "rows": rows}))
        assert (_finished(str(tmp_path), plan, arm, request) == rows) is resumed
    path.write_text(json.dumps({"key": _arm_key(plan, arm, request), "rows": [{"target": "t", "test": 0.5}]}))
    for edit in (folder / "EASE.yaml", scenario):  # a model file or a scenario that changed since: run again
        before = edit.read_text()
        edit.write_text(before + "# changed\n")
        assert _finished(str(tmp_path), plan, arm, request) is None, edit
        edit.write_text(before)
        assert _finished(str(tmp_path), plan, arm, request) is not None
    path.write_text(json.dumps({"key": "another plan", "rows": [{"target": "t", "test": 0.5}]}))
    assert _finished(str(tmp_path), plan, arm, request) is None  # another plan or keys: run again


# ----- validation picks; the table pairs per user ---------------------------------------------------------------------
def _row(arm, kind, valid, per_user, seed=1, lower=False):
    values = np.asarray(per_user, dtype=float)
    return {"family": "f", "target": "t", "arm": arm, "kind": kind, "data_seed": seed, "seed": seed, "metric": "ndcg@10",
            "lower_is_better": lower, "valid": valid, "valid_ndcg@10": valid, "test": float(values.mean()), "test_ndcg@10": float(values.mean()),
            "test_per_user": {"ndcg@10": values.tolist()}, "test_users": list(range(len(values))), "picked_config": {},
            "trials": 1, "trainable": 0.5 if kind == "transfer" else None, "seconds": 1.0, "fingerprint": "same"}


def test_best_baseline_and_transfer_are_picked_on_validation_not_test():
    rows = [_row("EASE", "baseline", 0.30, [0.2, 0.2, 0.2, 0.2]),   # best on validation, worse on test
            _row("pop", "baseline", 0.10, [0.9, 0.9, 0.9, 0.9]),    # best on test: must not be picked
            _row("A", "transfer", 0.25, [0.3, 0.4, 0.3, 0.4]),
            _row("B", "transfer", 0.35, [0.1, 0.1, 0.1, 0.2])]
    picks = {r["arm"]: r["picked"] for r in best_rows(rows)}
    assert picks == {BEST["baseline"]: "EASE", BEST["transfer"]: "B"}
    table = leaderboard_table(rows)
    assert "| f | t | ndcg@10 | EASE | 0.2000 | B | 0.1250 | -0.0750" in table


def _rmse_row(arm, kind, outcome_valid, per_user_mse):
    """A leaderboard row as the search's outcome gives it: the search maximizes valid_neg_rmse."""
    mse = np.asarray(per_user_mse, dtype=float)
    out = {"metric": "valid_neg_rmse", "target": "t", "trials": 1, "fingerprint": "same", "same_split": True,
           "best": {"best_valid": outcome_valid, "config": {}},
           "test_result": {"rmse": float(np.sqrt(mse.mean())), "mse": float(mse.mean())},
           "test_per_user": {"mse": mse.tolist()}, "test_users": list(range(len(mse))), "trainable": None}
    plan = SimpleNamespace(method=SimpleNamespace(name="f", scenario=None))
    arm = SimpleNamespace(name=arm, kind=kind, model="M", run_keys=lambda: {})
    return leaderboard_row(plan, arm, SimpleNamespace(data_seed=1, seed=1), out, 1.0)


def test_rmse_picks_the_lowest_error_and_gain_is_baseline_minus_transfer():
    rows = [_rmse_row("mean", "baseline", -0.95, [1.0, 1.2, 1.1]),   # validation RMSE 0.95: the better baseline
            _rmse_row("worse", "baseline", -1.30, [0.1, 0.1, 0.1]),  # 1.30 (best on test: never picked)
            _rmse_row("X", "transfer", -0.80, [0.5, 0.6, 0.7]),      # 0.80: the better transfer
            _rmse_row("Y", "transfer", -1.10, [0.0, 0.0, 0.0])]
    assert rows[0]["valid_rmse"] == 0.95 and rows[0]["paired_on"] == "test_mse"
    picks = {r["arm"]: r["picked"] for r in best_rows(rows)}
    assert picks == {BEST["baseline"]: "mean", BEST["transfer"]: "X"}
    assert "+0.5000" in leaderboard_table(rows)  # per-user MSE: baseline minus transfer


def test_arms_scored_on_different_data_are_not_paired():
    rows = [_row("EASE", "baseline", 0.30, [0.2, 0.2]), {**_row("A", "transfer", 0.25, [0.3, 0.4]), "fingerprint": "other"}]
    assert "not paired: arms scored on different data" in leaderboard_table(rows)


# ----- one small leaderboard, end to end ------------------------------------------------------------------------------
PLAN = """
about: a test plan
targets: [nondrama]
keys: {protocol: warm, task: ranking, epochs: 2, stopping_step: 1}
budget: 2
arms:
  pop:  {kind: baseline, model: TargetPop}
  EASE: {kind: baseline, model: TargetEASE, space: {reg_weight: {type: grid, values: [50.0, 500.0]}}}
  CMF:  {kind: transfer, model: CMF, space: {alpha: {type: grid, values: [0.3, 0.7]}}}
"""


@pytest.mark.slow
@pytest.mark.ray
def test_small_leaderboard_end_to_end(workdir, monkeypatch):
    (workdir / "plan.yaml").write_text(PLAN)
    lines = []
    rows = run_leaderboard(["overlap_cdr"], [2020], output=str(workdir / "lb"), work_dir=str(workdir / "work"),
                           progress=lines.append, num_cpus=2, plan_files={"overlap_cdr": str(workdir / "plan.yaml")})
    assert [r["arm"] for r in rows] == ["pop", "EASE", "CMF"] and len(lines) == 3
    assert [r["trials"] for r in rows] == [1, 2, 2]
    assert len({r["fingerprint"] for r in rows}) == 1 and all(r["same_split"] for r in rows)
    assert rows[1]["picked_config"]["reg_weight"] in (50.0, 500.0) and rows[2]["picked_config"]["alpha"] in (0.3, 0.7)
    users = [len(r["test_users"]) for r in rows]
    assert users[0] == users[1] == users[2] > 100
    saved = json.loads((workdir / "lb.json").read_text())
    assert len(saved["rows"]) == 3 and (workdir / "lb.png").is_file()
    assert "| overlap_cdr | nondrama | ndcg@10 | EASE |" in (workdir / "lb.md").read_text()
    # a rerun resumes every finished arm: no search runs again, and Ray does not start
    kept = workdir / "work" / "overlap_cdr" / "seed2020" / "EASE" / "leaderboard-rows.json"
    stamp = os.path.getmtime(kept)
    from recbole_transfer.tune import cluster

    with monkeypatch.context() as patch:
        patch.setattr(cluster, "ray_session", lambda *a, **k: pytest.fail("Ray started to resume finished arms"))
        again = run_leaderboard(["overlap_cdr"], [2020], work_dir=str(workdir / "work"), progress=lines.append,
                                plan_files={"overlap_cdr": str(workdir / "plan.yaml")})
    assert [r["test"] for r in again] == [r["test"] for r in rows] and all(r["resumed"] for r in again)
    assert os.path.getmtime(kept) == stamp
    # --workers: every arm a Ray task, their trials sharing the CPUs; the same rows in the same order
    lines = []
    at_once = run_leaderboard(["overlap_cdr"], [2020], work_dir=str(workdir / "at_once"), progress=lines.append,
                              workers=2, plan_files={"overlap_cdr": str(workdir / "plan.yaml")})
    assert lines[0].startswith("Ray ") and "3 arms, at most 2 at once" in lines[0] and len(lines) == 4
    assert [comparable(r) for r in at_once] == [comparable(r) for r in rows]
