"""Ray Tune search, end to end through the CLI (in this process): small planted data, 2 epochs, a local Ray on
2 CPUs.

One search (module fixture) serves several assertions: one validation report per epoch per trial, no
test metric reaching the searcher, the winner inside the space, a crashing trial recorded without ending
the search, the source pretrained once, nothing written outside the run directory, and a best.yaml that
reproduces the winner's test metrics outside Ray. Separate tests interrupt (Ctrl-C) and resume a search, and
join a cluster started with ``ray start --head``. The unit tests at the end need no Ray.
"""

import csv
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from recbole_transfer.data.synthetic import write_planted_domain
from recbole_transfer.registry import get_method
from recbole_transfer.tune import SearchSpace

from conftest import call_cli

METHOD = get_method("layer_transfer")

SPACE = """
scheduler: {type: asha, grace_period: 1, reduction_factor: 2}
branches:
  layers:
    transfer: {type: grid, values: [config-1, config-6]}
    transfer_mode: freeze
  broken:                     # every key is in range, but RecBole refuses the sampler when the trial builds its config
    transfer: config-5
    train_neg_sample_args: {distribution: gaussian, sample_num: 1}
"""
KEYS = ["--model=TransferMLP", "--source=src", "--target=tgt", "--data_path=../data", "--epochs=2",
        "--train_batch_size=512", "--seed=7", "--user_inter_num_interval=[3,inf)", "--num_cpus=2"]


def env_for(home):
    return {**os.environ, "OMP_NUM_THREADS": "1", "HOME": str(home)}


def make_dirs(base):
    """base/data (planted source and target), base/work (the CLI's cwd), base/home (its HOME)."""
    write_planted_domain(str(base / "data"), "src", n_users=120, n_items=130, per_user=12, n_clusters=4, seed=1)
    write_planted_domain(str(base / "data"), "tgt", n_users=80, n_items=120, per_user=6, n_clusters=4, seed=2)
    for name in ("work", "home"):
        (base / name).mkdir()
    (base / "work" / "space.yaml").write_text(SPACE)
    return base / "work", base / "home"


@pytest.fixture(scope="module")
def search(tmp_path_factory, shared_ray):
    shared_ray.down()  # the search starts its own Ray: it must write nothing into HOME either
    base = tmp_path_factory.mktemp("tune")
    work, home = make_dirs(base)
    before = sorted(os.listdir(work))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HOME", str(home))  # the driver and the Ray it starts write nothing into HOME
        code, out, err = call_cli(["--tune", "--search_space=space.yaml", "--run_dir=run", *KEYS], cwd=work)
    assert code == 0, err[-3000:]
    run = work / "run"
    result = json.loads((run / "tgt" / "result.json").read_text())
    return {"work": work, "home": home, "run": run, "stdout": out, "result": result, "before": before}


def reports(trial_dir):
    with open(os.path.join(trial_dir, "progress.csv"), encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.mark.ray
@pytest.mark.slow
def test_one_validation_report_per_epoch_and_no_test_metric(search):
    rows = search["result"]["rows"]
    assert len(rows) == 4  # none (added), config-1, config-6, broken
    ran = [r for r in rows if not r["ended"].startswith("error")]
    assert len(ran) == 3
    for row in ran:
        progress = reports(row["path"])
        assert [int(r["epoch"]) for r in progress] == list(range(1, row["epochs"] + 1))
        assert [int(r["training_iteration"]) for r in progress] == list(range(1, row["epochs"] + 1))
        assert all(r["valid_hit@10"] != "" for r in progress)
        assert not any(key.startswith("test") for key in progress[0])
        log = open(os.path.join(row["path"], "recbole.log"), encoding="utf-8").read()
        assert "valid result" in log and "test result: OrderedDict" not in log  # validated, never tested
        if row["ended"] == "finished":
            assert row["epochs"] == 2
        else:
            assert row["ended"] == "stopped early (ASHA)" and row["epochs"] == 1


def expected_winner(rows, per_user):
    """The selection rule, written out here from its statement (not the driver's code): the trial with the best
    validation metric (ties: the earlier trial), unless it is a transfer trial whose lead over the best no-transfer
    trial is at most one paired standard error, sd(d) / sqrt(n), of their per-user validation differences d; then
    that no-transfer trial. ``per_user(row)``: the row's per-user validation values. Returns (winner, (lead, margin)),
    or (winner, None) when no transfer trial led."""
    scored = sorted((r for r in rows if r["best_valid"] is not None and not r["ended"].startswith("error")),
                    key=lambda r: r["index"])
    best = scored[0]
    for row in scored[1:]:
        if row["best_valid"] > best["best_valid"]:
            best = row
    scratch = [r for r in scored if r["config"].get("transfer", "none") == "none"]
    if best in scratch or not scratch:
        return best, None
    base = scratch[0]
    for row in scratch[1:]:
        if row["best_valid"] > base["best_valid"]:
            base = row
    d = per_user(best) - per_user(base)
    margin = float(np.sqrt(np.sum((d - d.mean()) ** 2) / (len(d) - 1)) / np.sqrt(len(d)))
    lead = best["best_valid"] - base["best_valid"]
    return (best if lead > margin else base), (lead, margin)


@pytest.mark.ray
@pytest.mark.slow
def test_best_configuration_lies_in_the_space_and_is_tested_once(search):
    import torch

    result = search["result"]
    space = SearchSpace.from_file(str(search["work"] / "space.yaml"))
    assert result["best"]["config"] in space.trials(7)

    def per_user(row):  # the trial's per-user validation hit@10 at its best epoch, read from its checkpoint
        checkpoint = torch.load(row["model_file"], weights_only=True)
        assert checkpoint["fingerprint"] == result["fingerprint"]
        values = np.asarray(checkpoint["valid_per_user"]["hit@10"], dtype=np.float64)
        assert len(values) == 80 and np.mean(values) == pytest.approx(row["best_valid"], abs=5e-5)
        return values

    # Chosen on validation only: the best trial, or no transfer if the best leads it by <= one paired SE.
    winner, lead_and_margin = expected_winner(result["rows"], per_user)
    assert result["n_valid"] == 80
    assert result["best"]["trial_id"] == winner["trial_id"] and result["best"]["label"] == winner["label"], lead_and_margin
    if lead_and_margin is not None:  # a transfer trial led: the driver reports the same lead and paired margin
        lead, margin = lead_and_margin
        assert f"{lead:.4f}" in result["selection"] and f"margin {margin:.4f}" in result["selection"]
    assert set(result["test_result"]) == {"hit@10", "ndcg@10"}
    assert "best configuration" in search["stdout"] and "reproduce:" in search["stdout"]


def test_the_rule_written_in_these_tests_picks_as_stated():
    """expected_winner itself, on rows whose outcome is known: a lead above one paired SE wins, one below it keeps
    no transfer, a tie goes to the earlier trial."""
    def row(index, transfer, valid):
        return {"index": index, "trial_id": str(index), "label": transfer, "config": {"transfer": transfer},
                "best_valid": valid, "ended": "finished"}

    values = {0: np.array([0.0, 1.0] * 50), 1: np.array([1.0, 0.0] * 50)}  # d = +-1 on 100 users: SE 0.1005
    rows = [row(0, "none", 0.50), row(1, "config-1", 0.55), row(2, "config-6", None)]
    assert expected_winner(rows, lambda r: values[r["index"]])[0]["label"] == "none"  # lead 0.05 <= 0.1005
    values[1] = values[0] + 0.05  # the same lead on every user: SE 0
    assert expected_winner(rows, lambda r: values[r["index"]])[0]["label"] == "config-1"
    assert expected_winner([row(0, "none", 0.5), row(1, "config-1", 0.5)], None)[0]["label"] == "none"


@pytest.mark.ray
@pytest.mark.slow
def test_every_trial_is_scored_on_the_drivers_split_and_candidates(search):
    result = search["result"]
    ran = [r for r in result["rows"] if r["best_valid"] is not None]
    assert len(ran) == 3 and {r["fingerprint"] for r in ran} == {result["fingerprint"]}
    assert result["same_split"] is True
    from recbole_transfer.trainer import load_checkpoint

    configs = [load_checkpoint(r["model_file"])["config"] for r in ran]  # what each trial ran with
    assert {c["data_seed"] for c in configs} == {7}  # the global seed is every trial's data seed ...
    assert len({c["seed"] for c in configs}) == 3  # ... and each trial has its own training seed
    assert len(list((search["run"] / "protocols").glob("*.npz"))) == 2  # built once per domain (source, target)


@pytest.mark.ray
@pytest.mark.slow
def test_a_crashing_trial_is_recorded_and_the_search_goes_on(search):
    errors = [r for r in search["result"]["rows"] if r["ended"].startswith("error")]
    assert len(errors) == 1 and "gaussian" in errors[0]["ended"]
    assert errors[0]["config"]["train_neg_sample_args"]["distribution"] == "gaussian"
    assert search["result"]["errors"] == 1
    assert "ERROR (recorded, search goes on)" in search["stdout"]


@pytest.mark.ray
@pytest.mark.slow
def test_source_pretrained_once_and_nothing_written_outside_the_run_dir(search):
    run, work, home = search["run"], search["work"], search["home"]
    sources = [f for f in os.listdir(run / "source") if f.endswith(".pth")]
    assert len(sources) == 1
    state = json.loads((run / "search.json").read_text())
    assert state["source_checkpoint"] == str(run / "source" / sources[0])
    for row in search["result"]["rows"]:  # trials only save target checkpoints
        saved = os.path.join(row["path"], "saved")
        assert not os.path.isdir(saved) or all("-target-" in f for f in os.listdir(saved))
    assert sorted(os.listdir(work)) == sorted(search["before"] + ["run"])
    assert os.listdir(home) == []


@pytest.mark.ray
@pytest.mark.slow
def test_best_yaml_reproduces_the_winner_outside_ray(search, tmp_path, run_cli):
    result = search["result"]
    best_yaml = result["best_yaml"]
    keys = yaml.safe_load(open(best_yaml, encoding="utf-8"))
    assert keys["transfer"] == result["best"]["config"]["transfer"]
    command = shlex.split(result["command"])[2:]  # drop "python run_recbole_transfer.py"
    code, out, err = run_cli(command, cwd=tmp_path)  # paths in best.yaml are absolute: any directory
    assert code == 0, err[-2000:]
    line = next(x for x in out.splitlines() if x.startswith("transfer="))
    test = eval(line.split("test: ", 1)[1])  # noqa: S307 - the CLI prints a plain dict
    assert test == pytest.approx(result["test_result"], abs=1e-4)


@pytest.mark.ray
@pytest.mark.slow
def test_interrupted_search_resumes_to_completion(tmp_path, run_cli, monkeypatch):
    work, _home = make_dirs(tmp_path)
    (work / "space.yaml").write_text(
        "scheduler: {type: fifo}\nbranches:\n  layers:\n    transfer: {type: grid, values: [config-1, config-6]}\n"
        "  broken: {transfer: config-5, train_neg_sample_args: {distribution: gaussian, sample_num: 1}}\n"
    )
    args = ["--tune", "--search_space=space.yaml", "--run_dir=run", *KEYS]
    from recbole_transfer.cli import commands

    printed = commands._print

    def interrupt_after_the_first_trial(msg):
        printed(msg)
        if "trial 1/4" in msg:  # Ctrl-C (SIGINT to this process, the driver) as soon as the first trial has ended
            os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as patch:
        patch.setattr(commands, "_print", interrupt_after_the_first_trial)
        code, out, err = run_cli(args, cwd=work)
    assert code == 130, err[-2000:]
    assert "continue it with --resume=" in err
    target_dir = work / "run" / "tgt"
    kept = [json.loads(x) for x in (target_dir / "trial_ends.jsonl").read_text().splitlines()]
    assert 1 <= len(kept) < 4
    kept_progress = {r["trial_id"]: (target_dir / f"trial_{r['trial_id']}" / "progress.csv").read_bytes()
                     for r in kept if r["outcome"] != "error"}
    code, out, err = run_cli([f"--resume={work / 'run'}"], cwd=work)
    assert code == 0, err[-3000:]
    assert f"{len(kept)} ended trials are kept" in out
    assert sum("] trial " in x for x in out.splitlines()) == 4 - len(kept)  # only the others ran
    for trial_id, before in kept_progress.items():
        assert (target_dir / f"trial_{trial_id}" / "progress.csv").read_bytes() == before
    result = json.loads((target_dir / "result.json").read_text())
    assert len(result["rows"]) == 4 and result["errors"] == 1
    assert all(r["ended"] == "finished" and r["epochs"] == 2 for r in result["rows"] if "train_neg_sample_args" not in r["config"])
    code, out, _err = run_cli([f"--resume={work / 'run'}"], cwd=work)  # a finished search: results are read back
    assert code == 0 and "search already finished" in out


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.ray
@pytest.mark.slow
def test_search_joins_a_cluster_started_with_ray_start(tmp_path, run_cli, own_ray):
    """``ray start --head --block`` in the foreground of a child process: terminating that process stops
    this cluster only (``ray stop`` would stop every Ray on the machine, a user's searches included)."""
    work, home = make_dirs(tmp_path)
    (work / "space.yaml").write_text("branches:\n  layers: {transfer: config-6}\n")
    ray = os.path.join(os.path.dirname(sys.executable), "ray")
    port = _free_port()
    head = subprocess.Popen(
        [ray, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
         "--include-dashboard=false", "--disable-usage-stats"],
        env=env_for(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(120):  # wait until the head's GCS accepts connections
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        code, out, err = run_cli(["--tune", "--search_space=space.yaml", "--run_dir=run", f"--ray_address=127.0.0.1:{port}",
                                  *KEYS[:-1]], cwd=work)
        assert code == 0, err[-3000:]
        assert f":{port}: 2 CPUs" in out  # "Ray cluster <ip>:<port>": joined it, did not start its own
        result = json.loads((work / "run" / "tgt" / "result.json").read_text())
        assert len(result["rows"]) == 2 and result["errors"] == 0
        assert all(r["ended"] == "finished" for r in result["rows"])
    finally:
        head.send_signal(signal.SIGTERM)
        head.wait(timeout=120)


@pytest.mark.ray
@pytest.mark.slow
def test_bad_search_inputs_exit_2(tmp_path, run_cli):
    work, _home = make_dirs(tmp_path)
    (work / "bad.yaml").write_text("branches:\n  layers:\n    transfer: {type: grid, values: [config-1, '[fc9]']}\n")
    (work / "frozen.yaml").write_text("branches:\n  layers:\n    transfer: config-1\n    transfer_mode: frozen\n")
    (work / "busy").mkdir()
    (work / "busy" / "x").write_text("")
    cases = [
        # a trial's strategy key: refused before the source is pretrained and before Ray starts
        (["--tune", "--search_space=frozen.yaml", "--run_dir=r0", *KEYS], "transfer_mode='frozen': must be one of freeze, finetune"),
        (["--tune", "--search_space=nope.yaml", *KEYS], "search_space: file"),
        (["--tune", "--search_space=bad.yaml", "--run_dir=r1", *KEYS], "layer 'fc9' not found"),
        (["--tune", "--run_dir=busy", *KEYS], "is not empty"),
        (["--resume=busy"], "no search.json there"),
        (["--tune", f"--ray_address=127.0.0.1:{_free_port()}", *KEYS[:-1]], "no Ray cluster answers there"),
        (["--tune", "--ray_address=ray://head:10001", *KEYS[:-1]], "Ray Client addresses are not supported"),
        (["--tune", "--ray_address=127.0.0.1:1", "--num_cpus=2", *KEYS[:-1]], "with 2 CPUs: the CPUs are a local Ray's"),
    ]
    for args, message in cases:
        code, _out, err = run_cli(args, cwd=work)
        assert code == 2, (args, err[-2000:])
        assert message in err and "Traceback" not in err, (args, err[-2000:])
    assert not list((work / "r0").rglob("*.pth"))  # no source stage ran for the refused space


class StubTrial:
    def __init__(self, last_result, trial_id="abc_00001"):
        self.trial_id, self.last_result = trial_id, last_result
        self.config = {"trial": {"branch": "layers", "transfer": "config-1", "transfer_mode": "freeze"}}
        self.metric_analysis = {"valid_hit@10": {"max": 0.5}}


def test_progress_tells_a_finished_trial_from_one_the_scheduler_stopped(tmp_path):
    from recbole_transfer.tune.trials import ended as _ends, progress_callback as _progress_callback

    lines, ends = [], tmp_path / "ends.jsonl"
    progress = _progress_callback(METHOD, "tgt", 3, "valid_hit@10", lines.append, str(ends))
    progress.on_trial_complete(0, [], StubTrial({"epoch": 2, "recbole_done": True}, "t_1"))
    progress.on_trial_complete(0, [], StubTrial({"epoch": 1, "recbole_done": False}, "t_2"))
    progress.on_trial_error(0, [], StubTrial({}, "t_3"))
    assert {k: v["outcome"] for k, v in _ends(str(ends)).items()} == {
        "t_1": "finished", "t_2": "stopped early (ASHA)", "t_3": "error"}
    assert lines[0].startswith("[tgt] trial 1/3 config-1 freeze") and lines[2].endswith("ERROR (recorded, search goes on)")
    with open(ends, "a", encoding="utf-8") as f:  # a line cut off by a killed process is skipped
        f.write('{"trial_id": "t_4", "outc')
    assert len(_ends(str(ends))) == 3


def test_best_yaml_of_a_stopped_transfer_winner_pins_epochs_and_source(tmp_path, monkeypatch):
    """The two-stage runner's finish_search gives the keys that reproduce the winner; best.yaml writes them."""
    from recbole_transfer.pipeline import runner as runner_module
    from recbole_transfer.tune import SearchState, trial_seed
    from recbole_transfer.tune.tables import write_best_yaml

    monkeypatch.setattr(runner_module, "evaluate_checkpoint", lambda path, config_dict=None, details=False: (None, {"hit@10": 0.4}, {}))
    state = SearchState(method="layer_transfer", model="TransferMLP", source="src", targets=["tgt"],
                        config_files=["/a.yaml"], config_dict={"data_path": "/d", "learning_rate": 0.002}, space_path="",
                        space_text="", num_samples=1, default_transfer="none", run_dir="/run", seed=7, num_threads=1,
                        source_checkpoint="/run/source/s.pth")

    def best_yaml(row):
        finished = METHOD.runner.finish_search(METHOD, state, "tgt", row, "valid_hit@10")
        assert finished["test_result"] == {"hit@10": 0.4}
        command = write_best_yaml(METHOD, str(path), state, "tgt", row, "valid_hit@10", finished["test_result"],
                                  finished["keys"])
        return yaml.safe_load(path.read_text()), command

    row = {"config": {"branch": "layers", "transfer": "config-3", "transfer_mode": "finetune"}, "stopped_early": True,
           "epochs": 4, "model_file": "/run/tgt/trial/t.pth", "label": "config-3 finetune", "best_valid": 0.5}
    path = tmp_path / "best.yaml"
    keys, command = best_yaml(row)
    assert keys == {"data_path": "/d", "learning_rate": 0.002, "transfer": "config-3", "transfer_mode": "finetune",
                    "seed": trial_seed(7, row["config"]), "num_threads": 1, "epochs": 4,
                    "source_checkpoint": "/run/source/s.pth"}
    assert f'--config_files="/a.yaml {path}"' in command and "--target=tgt" in command
    finished_scratch = {"config": {"branch": "none", "transfer": "none"}, "stopped_early": False, "epochs": 9,
                        "model_file": "/run/tgt/trial/s.pth", "label": "none", "best_valid": 0.5}
    keys, _command = best_yaml(finished_scratch)
    assert "epochs" not in keys and "source_checkpoint" not in keys


def test_asha_never_stops_the_no_transfer_baseline():
    from recbole_transfer.tune.trials import baseline_asha as _baseline_asha

    def trial(trial_id, transfer):
        stub = StubTrial({}, trial_id)
        stub.config = {"trial": {"branch": "b", "transfer": transfer}}
        return stub

    scheduler = _baseline_asha(METHOD, time_attr="epoch", metric="valid_hit@10", mode="max", max_t=8, grace_period=1,
                               reduction_factor=2)
    good, bad, scratch = trial("t_1", "config-1"), trial("t_2", "config-2"), trial("t_3", "none")
    for t in (good, bad, scratch):
        scheduler.on_trial_add(None, t)
    assert scheduler.on_trial_result(None, good, {"epoch": 1, "valid_hit@10": 0.6}) == "CONTINUE"
    assert scheduler.on_trial_result(None, bad, {"epoch": 1, "valid_hit@10": 0.1}) == "STOP"  # lags at the rung
    assert scheduler.on_trial_result(None, scratch, {"epoch": 1, "valid_hit@10": 0.1}) == "CONTINUE"


@pytest.mark.ray
def test_a_local_rays_tasks_run_at_the_drivers_priority(own_ray):
    """Ray starts its workers at nice 15 by default, where any other work on the machine starves them (a task 20x
    slower beside two busy processes on 2 cores); the local Ray of ray_session runs them at the driver's."""
    import ray

    from recbole_transfer.tune.cluster import ray_session

    if os.nice(0) >= 15:
        pytest.skip("the driver itself runs at nice >= 15: no difference to see")

    def niceness():  # a nested function: Ray sends it by value (a worker cannot import this test module)
        return os.nice(0)

    with ray_session(num_cpus=2):
        assert ray.get(ray.remote(num_cpus=1)(niceness).remote()) == os.nice(0)


@pytest.mark.ray
def test_tasks_run_at_most_limit_at_once_and_an_error_is_the_commands():
    """``run_tasks``: every call's result reaches ``on_done`` under its index; never more than ``limit`` tasks are in
    flight (counted between submission and ``on_done``); a task's TransferError is raised as itself (one line at the
    command), not as Ray's wrapped traceback."""
    import ray

    from recbole_transfer.errors import TransferConfigError
    from recbole_transfer.tune.cluster import run_tasks

    class Counted:  # a task whose results are ready at once: what is measured is how many run_tasks has out
        def __init__(self):
            self.out = self.most = 0

        def remote(self, value):
            self.out += 1
            self.most = max(self.most, self.out)
            return ray.put(value * 10)

    for limit, most in ((1, 1), (2, 2), (None, 4)):
        task, done = Counted(), {}

        def on_done(index, value, task=task, done=done):
            task.out -= 1
            done[index] = value

        run_tasks(task, [(v,) for v in range(4)], limit, on_done)
        assert done == {0: 0, 1: 10, 2: 20, 3: 30} and task.most == most, (limit, task.most)

    def check(value):
        if value < 0:
            raise TransferConfigError(f"value={value}: must be >= 0")
        return value

    with pytest.raises(TransferConfigError, match="value=-1: must be >= 0"):
        run_tasks(ray.remote(num_cpus=1, max_retries=0)(check), [(1,), (-1,), (2,)], 2, lambda index, out: None)
