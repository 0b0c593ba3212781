"""The keys: declared once with a readable type and range, checked by one validator, resolved once per request, and no
config built only to read a key."""

import ast
import os

import pytest
import yaml

import recbole_transfer
from recbole_transfer import keys, registry
from recbole_transfer.config import TransferConfig
from recbole_transfer.errors import TransferConfigError
from recbole_transfer.request import Request

PACKAGE = os.path.dirname(os.path.abspath(recbole_transfer.__file__))


def plugin_models():
    return [name for method in registry.methods() for name in method.models]


@pytest.mark.parametrize("model", plugin_models())
def test_every_key_of_ours_is_annotated_and_its_default_fits(model):
    notes = keys.annotations(model)
    for path in keys.layers(model):
        data = yaml.load(open(path, encoding="utf-8"), Loader=keys.LOADER) or {}
        ours = [k for k in data if k not in keys.recbole_keys()]
        assert not [k for k in ours if k not in notes], f"{path}: keys without a '# (type)' annotation"
    resolved = keys.resolve(model)
    keys.check(resolved, model)  # every shipped default fits its own annotation


def test_annotations_read_types_ranges_and_choices():
    note = keys.parse_annotation("eta", "(float) the share. Range in (0, 1].")
    assert note.accepts(1.0) and note.accepts(0.5) and not note.accepts(0.0) and not note.accepts(1.5)
    assert not note.accepts(True) and not note.accepts("0.5")
    note = keys.parse_annotation("k", "(int or None) a width. Range in [1, inf).")
    assert note.accepts(None) and note.accepts(3) and not note.accepts(3.0) and not note.accepts(0) and not note.accepts(2.5)
    note = keys.parse_annotation("m", "(list of str) methods. Range in ['pop', 'sml'].")
    assert note.accepts(["pop", "sml"]) and not note.accepts(["pop", "smll"]) and not note.accepts("pop")
    inf, nan = float("inf"), float("nan")
    note = keys.parse_annotation("lr", "(float) a rate. Range in (0, inf).")
    assert note.accepts(1e9) and not note.accepts(inf) and not note.accepts(nan) and not note.accepts(-inf)
    note = keys.parse_annotation("w", "(float) a weight. Range in [0, inf].")  # a closed end takes infinity itself
    assert note.accepts(inf) and not note.accepts(nan) and not note.accepts(-inf)
    assert keys.parse_annotation("x", "(float) any number.").accepts(inf)  # no range: nothing to refuse
    with pytest.raises(TransferConfigError, match="unreadable type"):
        keys.parse_annotation("x", "(integer) oops")
    with pytest.raises(TransferConfigError, match="not numeric"):
        keys.parse_annotation("x", "(int) oops. Range in [1, d].")


@pytest.mark.parametrize("model, bad, message", [
    ("BPR", {"embedding_size": -4}, r"embedding_size=-4: must be an integer >= 1 \(properties/recbole_checks.yaml\)"),
    ("TransferMLP", {"epochs": "abc"}, "epochs='abc': must be an integer >= 1"),
    ("TransferMLP", {"keep_fraction": 0}, r"keep_fraction=0: must be a number in \(0, 1\]"),
    ("CMF", {"protocol": "cold"}, "protocol='cold': must be one of warm, cold_start"),
    ("SML", {"retrain_methods": ["pop", "smll"]}, "did you mean 'sml'"),
    ("MMTNet", {"drr_beta": -1}, r"drr_beta=-1: must be a number >= 0 \(mmtnet/keys.yaml\)"),
    ("CMF", {"eta": float("nan")}, r"eta=nan: must be a number in \(0, 1\]"),
    ("TransferMLP", {"learning_rate": float("inf")}, "learning_rate=inf: must be a number > 0"),
])
def test_one_validator_refuses_a_bad_key_in_a_config_and_in_a_request(workdir, model, bad, message):
    with pytest.raises(TransferConfigError, match=message):
        TransferConfig(model, "ml-100k", None, bad)
    with pytest.raises(TransferConfigError, match=message):
        Request(model, None, ["ml-100k"], (), bad)


def test_a_list_key_written_as_a_string_is_read_as_a_list(workdir):
    """``--eval_domains=target``, ``stages: joint:3`` or ``retrain_methods: full,sml`` (a file's or a caller's string)
    are lists, as ``[a, b]`` would be; each item is read as YAML reads it."""
    config = TransferConfig("CMF", "ml-100k", None, {"eval_domains": "target", "stages": "joint:3",
                                                    "scenario_etas": "0.5,0.2", "scenario_protocols": "[warm]"})
    assert (config["eval_domains"], config["stages"], config["scenario_etas"], config["scenario_protocols"]) == (
        ["target"], ["joint:3"], [0.5, 0.2], ["warm"])
    request = Request("SML", None, None, (), {"retrain_methods": "full,sml", "targets": "a,b"})
    assert request.keys["retrain_methods"] == ["full", "sml"] and request.targets == ("a", "b")
    assert keys.normalize({"metrics": "Hit", "topk": 10}, "BPR") == {"metrics": "Hit", "topk": 10}  # str and int allowed
    with pytest.raises(TransferConfigError, match=r"scenario_etas=\[0\]: must be a list of numbers \(in \(0, 1\]\)"):
        Request("CMF", None, None, (), {"scenario_etas": "0"})


def test_bad_values_that_fail_late_in_recbole_fail_first_here(workdir):
    with pytest.raises(TransferConfigError, match="epochs=2.0: must be an integer"):  # torch's range() would fail
        TransferConfig("TransferMLP", "ml-100k", None, {"epochs": 2.0})
    with pytest.raises(TransferConfigError, match=r"valid_metric='Foo@10': not computed by metrics"):  # after an epoch
        TransferConfig("BPR", "ml-100k", None, {"valid_metric": "Foo@10", "metrics": ["Hit"], "topk": [10]})


def test_a_key_of_another_method_is_not_checked_against_that_method(workdir):
    """``reg_weight`` is the overlap family's (a number); a RecBole model that reads a list under that name is not
    held to it."""
    assert keys.annotations("CMF")["reg_weight"].want() == "a number >= 0"
    assert "reg_weight" not in keys.annotations("HGN")
    keys.check({"reg_weight": [0.0, 0.0]}, "HGN")


def test_a_request_resolves_model_targets_and_seeds_once(tmp_path):
    scenario = registry.default_method().scenario
    request = Request(None, None, None, [scenario], {"seed": 5})
    with open(scenario, encoding="utf-8") as f:
        declared = yaml.safe_load(f)
    assert request.model == declared["model"] and list(request.targets) == list(declared["targets"])
    assert request.seed == 5 and request.data_seed == 5
    assert request.with_keys(data_seed=9).data_seed == 9 and request.data_seed == 5  # frozen: a new request
    assert request.with_keys(model="BPR").keys["model"] == "BPR"
    with pytest.raises(TransferConfigError, match="does not exist"):
        Request("BPR", None, None, [str(tmp_path / "nope.yaml")], {})


def _calls(path, name):
    tree = ast.parse(open(path, encoding="utf-8").read())
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for call in ast.walk(node):
                if isinstance(call, ast.Call) and getattr(call.func, "id", None) == name:
                    yield node.name


def test_no_config_is_built_only_to_read_a_key():
    """A TransferConfig is built in one place, for a domain (its dataset's defaults, then the run's keys); a command
    reads its keys from its Request. A reload of a checkpoint's config is TransferConfig.from_checkpoint."""
    builders = []
    for folder, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                builders += [f"{os.path.relpath(path, PACKAGE)}:{fn}" for fn in _calls(path, "TransferConfig")]
    assert builders == ["request.py:domain_config"], builders


def test_the_data_seed_rule_is_written_once():
    """"data_seed, else seed" is keys.data_seed_of; no other line falls back from data_seed to seed."""
    defined, fallbacks = [], []
    for folder, _dirs, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                for number, line in enumerate(open(path, encoding="utf-8"), 1):
                    if line.startswith("def data_seed_of("):
                        defined.append(os.path.relpath(path, PACKAGE))
                    elif "data_seed" in line and "None" in line and "seed" in line.replace("data_seed", ""):
                        fallbacks.append(f"{os.path.relpath(path, PACKAGE)}:{number}")
    assert defined == ["keys.py"] and not fallbacks, (defined, fallbacks)
