"""The method registry: a method defined outside the package (tests/tower_method) registers itself and then runs
end to end through the shared floors: a single run, --scenario, --tune; built-in methods follow one contract."""

import importlib
import inspect
import json
import os
import sys
from importlib import metadata

import pytest

from recbole_transfer import registry
from recbole_transfer.data.synthetic import write_planted_domain
from recbole_transfer.errors import TransferConfigError
from recbole_transfer.pipeline.base import Runner
from recbole_transfer.transfer import TransferStrategy


def built_in_packages():
    """Every method package shipped under recbole_transfer/methods/ (a folder with an __init__.py), read from the
    folder itself: a new method is covered by the contract test without being listed anywhere."""
    import recbole_transfer.methods

    folder = os.path.dirname(os.path.abspath(recbole_transfer.methods.__file__))
    return sorted(name for name in os.listdir(folder) if os.path.isfile(os.path.join(folder, name, "__init__.py")))


BUILT_IN = built_in_packages()


@pytest.fixture
def tower(workdir):
    """The outside method, registered by importing its module; planted source and target under workdir/data."""
    module = importlib.import_module("tower_method")
    if "tower_copy" not in {m.name for m in registry.methods()}:
        importlib.reload(module)
    data = workdir / "data"
    write_planted_domain(str(data), "src", n_users=100, n_items=110, per_user=12, n_clusters=4, seed=1)
    write_planted_domain(str(data), "tgt", n_users=60, n_items=130, per_user=6, n_clusters=4, seed=2)
    yield [f"--data_path={data}", "--seed=3", "--num_threads=1"]
    registry.unregister("tower_copy")


def test_built_in_methods_follow_one_contract():
    assert {"layer_transfer", "mmtnet", "overlap_cdr", "peterrec", "sml"} <= set(BUILT_IN)
    shipped = {m.name for m in registry.methods() if (m.module or "").startswith(registry.BUILTIN_PACKAGE + ".")}
    assert shipped == set(BUILT_IN)  # every package registers its method, named after its folder; nothing else is built in
    for name in BUILT_IN:
        method = registry.get_method(name)
        assert method.module == f"{registry.BUILTIN_PACKAGE}.{name}", name
        assert os.path.samefile(method.folder, os.path.join(os.path.dirname(inspect.getfile(registry)), "methods", name)), name
        assert isinstance(method.runner, Runner)
        assert method.keys_file and os.path.isfile(method.keys_file), name
        assert method.scenario and method.arms, name
        if method.strategy is not None:
            assert issubclass(method.strategy, TransferStrategy)
            for hook in ("check", "apply"):
                assert list(inspect.signature(getattr(method.strategy, hook)).parameters) == ["self", "model", "source", "target"]
            assert method.is_baseline(method.baseline_trial())
    assert registry.default_method().name == "layer_transfer"
    assert registry.method_of("NeuMF").name == "layer_transfer"  # a RecBole model joins the default method
    assert registry.method_of("PeterRec").name == "peterrec"


def test_registering_a_taken_name_or_model_is_an_error(tower):
    other = registry.Method(name="other", models={"TinyTower": object}, folder="/elsewhere")
    with pytest.raises(TransferConfigError, match="'TinyTower' already belongs to 'tower_copy'"):
        registry.register(other)
    with pytest.raises(TransferConfigError, match="registered twice"):
        registry.register(registry.Method(name="tower_copy", models={}, folder="/elsewhere"))
    with pytest.raises(TransferConfigError, match="did you mean 'tower_copy'"):
        registry.get_method("tower_cpy")


def test_an_entry_point_registers_a_method(monkeypatch):
    registry.unregister("tower_copy")
    sys.modules.pop("tower_method", None)
    point = metadata.EntryPoint(name="tower", value="tower_method", group=registry.ENTRY_POINT_GROUP)
    monkeypatch.setattr(registry.metadata, "entry_points", lambda group=None: [point] if group == registry.ENTRY_POINT_GROUP else [])
    monkeypatch.setitem(registry._STATE, "discovered", False)
    try:
        assert registry.method_of("TinyTower").name == "tower_copy"
    finally:
        registry.unregister("tower_copy")


def test_outside_method_single_run_and_scenario_through_the_cli(tower, run_cli, workdir):
    registry.unregister("tower_copy")
    sys.modules.pop("tower_method", None)  # registered again by the command line's --import
    code, out, _err = run_cli(["--import=tower_method", "--model=TinyTower", "--target=tgt", "--transfer=tower", *tower])
    assert code == 0, out
    assert "transfer=tower  test: {'hit@10'" in out

    code, out, _err = run_cli(["--model=TinyTower", "--scenario", "--seeds=[1]", f"--output={workdir / 'run'}", *tower])
    assert code == 0, out
    rows = json.loads((workdir / "run.json").read_text())
    assert sorted({r["arm"] for r in rows}) == ["none", "tower", "tower_ft"]
    assert len({r["fingerprint"] for r in rows}) == 1  # every arm scored on the same data
    assert "Paired difference of HR@10 to none" in out and (workdir / "run.png").is_file()

    code, _out, err = run_cli(["--model=TinyTower", "--scenario", "--arms=[none,towr]", *tower])
    assert code == 2 and "did you mean 'tower'" in err
    code, _out, err = run_cli(["--model=TinyTower", "--scenario", "--arms=[none,drr]", *tower])  # another method's arm
    assert code == 2 and "'drr' is an arm of method 'mmtnet'" in err


@pytest.mark.ray
@pytest.mark.slow
def test_outside_method_tune_through_the_one_driver(tower, run_cli, workdir, own_ray):
    code, out, _err = run_cli(["--model=TinyTower", "--tune", f"--run_dir={workdir / 'search'}", "--num_cpus=2",
                               f"--output={workdir / 'tuned'}", *tower])
    assert code == 0, out
    result = json.loads((workdir / "search" / "tgt" / "result.json").read_text())
    assert result["trials"] == 3 and result["errors"] == 0 and result["same_split"]
    assert {r["label"] for r in result["rows"]} == {"none", "tower", "tower_ft"}
    assert result["best_yaml"] and os.path.isfile(result["best_yaml"])
    saved = json.loads((workdir / "tuned.json").read_text())  # --output: the outcomes and the printed tables
    assert saved[0]["target"] == "tgt" and "| target | best configuration |" in (workdir / "tuned.md").read_text()


def test_a_registered_method_pickles_as_itself_and_an_unregistered_one_field_by_field():
    """A leaderboard arm's task receives its plan's method pickled: the registered method there (its runner, its
    strategy), never a detached copy; a Method not in the registry still copies and pickles."""
    import copy
    import pickle

    method = registry.get_method("overlap_cdr")
    assert pickle.loads(pickle.dumps(method)) is method and copy.deepcopy(method) is method
    loose = registry.Method(name="not_registered", models={})
    for twin in (copy.deepcopy(loose), pickle.loads(pickle.dumps(loose))):
        assert twin is not loose and twin.name == "not_registered" and twin.models == {}
