"""TransferConfig: model lookup, YAML layering, key checks."""

import os

import pytest

from recbole_transfer import TransferConfig, get_model
from recbole_transfer.registry import get_method
from recbole_transfer.errors import TransferConfigError
from recbole_transfer.methods.layer_transfer.model import TransferMLP


def test_plugin_model_resolves_before_recbole_and_gets_its_yaml(workdir):
    config = TransferConfig("TransferMLP", "ml-100k")
    assert config.model_class is TransferMLP
    assert config["embedding_size"] == 32  # methods/layer_transfer/TransferMLP.yaml
    assert config["mlp_hidden_size"] == [64, 32, 16, 8]
    assert config["transfer"] == "none"  # properties/overall.yaml
    assert config["eval_args"]["mode"] == {"valid": "uni99", "test": "uni99"}


def test_recbole_models_resolve_and_keep_recbole_defaults(workdir):
    config = TransferConfig("NeuMF", "ml-100k")
    assert config.model_class.__name__ == "NeuMF"
    assert config["mlp_hidden_size"] == [128, 64]  # RecBole's NeuMF.yaml
    assert get_model("neumf").__name__ == "NeuMF"  # case-insensitive fallback


def test_unknown_model_lists_close_names():
    with pytest.raises(TransferConfigError, match=r"model='NeuMFF'.*did you mean 'neumf'"):
        get_model("NeuMFF")


@pytest.mark.parametrize(
    "key, hint",
    [("tranfer", "transfer"), ("transfer_mdoe", "transfer_mode"), ("source_epoch", "source_epochs")],
)
def test_misspelled_transfer_key_is_an_error_with_a_suggestion(workdir, key, hint):
    with pytest.raises(TransferConfigError, match=f"{key}=.*did you mean '{hint}'"):
        TransferConfig("TransferMLP", "ml-100k", None, {key: "config-1"})


def test_bad_values_are_errors(workdir):
    with pytest.raises(TransferConfigError, match="transfer_mode='frozen': must be one of freeze, finetune"):
        TransferConfig("TransferMLP", "ml-100k", None, {"transfer_mode": "frozen"})
    with pytest.raises(TransferConfigError, match="num_threads=0"):
        TransferConfig("TransferMLP", "ml-100k", None, {"num_threads": 0})
    with pytest.raises(TransferConfigError, match="does not exist"):
        TransferConfig("TransferMLP", "ml-100k", ["/nonexistent/x.yaml"])


def test_command_line_is_not_read(workdir, monkeypatch):
    monkeypatch.setattr("sys.argv", ["prog", "--transfer=config-1", "--epochs=1"])
    config = TransferConfig("TransferMLP", "ml-100k")
    assert config["transfer"] == "none" and config["epochs"] == 60


def test_properties_are_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    from recbole_transfer.utils import PROPERTIES_DIR

    assert os.path.isfile(os.path.join(PROPERTIES_DIR, "overall.yaml"))
    for method in ("layer_transfer", "mmtnet", "peterrec", "sml"):  # each method's files live in its folder
        assert os.path.isabs(get_method(method).scenario) and os.path.isfile(get_method(method).scenario)
    assert os.path.basename(get_method("layer_transfer").scenario) == "scenario.yaml"


def test_resolving_a_sequential_recbole_model_leaves_anomaly_detection_as_it_was(monkeypatch):
    """RecBole's sine.py switches torch's anomaly detection on when imported, and importing any of RecBole's sequential
    models (GRU4Rec, NextItNet) imports it: every later backward pass of the process would record stack traces
    (PeterRec's fine-tuning measured several times slower)."""
    import torch

    from recbole_transfer import config as config_module

    real = config_module.recbole_get_model

    def importing_sine(name):
        torch.autograd.set_detect_anomaly(True)  # what the first import of a sequential model does
        return real(name)

    monkeypatch.setattr(config_module, "recbole_get_model", importing_sine)
    assert get_model("GRU4Rec").__name__ == "GRU4Rec" and not torch.is_anomaly_enabled()
    torch.autograd.set_detect_anomaly(True)  # a caller who asked for it keeps it
    try:
        get_model("GRU4Rec")
        assert torch.is_anomaly_enabled()
    finally:
        torch.autograd.set_detect_anomaly(False)


def test_a_partial_mapping_key_changes_only_the_entries_it_names(small_domains, run_cli, tmp_path, caplog):
    """``--eval_args="{'mode': 'full'}"`` keeps the split, grouping and order below it (the plugin's leave-one-out),
    in the request's keys, a domain's config and a run, which prints the effective eval_args; a config file's
    ``eval_args`` replaces the whole setting, as RecBole reads its files (RecBole fills the rest: RS 0.8/0.1/0.1)."""
    from recbole_transfer.request import Request

    given = {**small_domains, "eval_args": {"mode": "full"}}
    kept = {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "RO", "mode": "full"}
    request = Request("BPR", None, ["tgt"], (), given)
    assert dict(request.keys["eval_args"]) == kept
    full = {"valid": "full", "test": "full"}  # RecBole's config spells a mode out per phase
    assert request.config("tgt")["eval_args"] == {**kept, "mode": full}
    assert request.with_keys(eval_args={"order": "TO"}).config("tgt")["eval_args"] == {**kept, "order": "TO", "mode": full}
    whole = tmp_path / "whole.yaml"
    whole.write_text("eval_args: {mode: full}\n")
    assert Request("BPR", None, ["tgt"], [whole], small_domains).config("tgt")["eval_args"]["split"] == {"RS": [0.8, 0.1, 0.1]}
    halves = tmp_path / "halves.yaml"  # a file's split, then a partial mapping over it: a checkpoint reloads both
    halves.write_text("eval_args: {split: {RS: [0.5, 0.25, 0.25]}, group_by: user, order: RO, mode: uni99}\n")
    config = Request("BPR", None, ["tgt"], [halves], given).config("tgt")
    assert config["eval_args"]["split"] == {"RS": [0.5, 0.25, 0.25]} and config["eval_args"]["mode"] == full
    reloaded = TransferConfig.from_checkpoint({"config": config.reload_dict()})
    assert reloaded["eval_args"] == config["eval_args"]
    assert TransferConfig.from_checkpoint({"config": config.reload_dict()}, {"eval_args": {"order": "TO"}})[
        "eval_args"] == {**config["eval_args"], "order": "TO"}
    with caplog.at_level("INFO", logger="recbole_transfer"):
        code, out, err = run_cli(["--model=BPR", "--target=tgt", "--epochs=1", "--eval_args={'mode': 'full'}"]
                                 + [f"--{k}={v}" for k, v in small_domains.items() if k != "epochs"])
    assert code == 0, err[-2000:]
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("protocol "))
    assert "eval_args {'split': {'LS': 'valid_and_test'}" in line and "'mode': {'valid': 'full', 'test': 'full'}" in line, line


def test_ease_is_recboles_behind_a_memory_guard_that_names_itemknn(small_domains, run_cli, monkeypatch):
    """``--model=EASE`` resolves to the plugin's EASE: RecBole's EASE exactly (the same item weights), refused with exit 2
    and ItemKNN named when its items x items build would not fit in the available memory."""
    import numpy as np
    from recbole.data import create_dataset
    from recbole.model.general_recommender import EASE as RecBoleEASE
    from recbole_transfer.model import EASE, ease

    config = TransferConfig("EASE", "tgt", None, small_domains)
    assert get_model("EASE") is EASE
    dataset = create_dataset(config)
    assert np.array_equal(EASE(config, dataset).item_similarity, RecBoleEASE(config, dataset).item_similarity)
    monkeypatch.setattr(ease, "available_memory", lambda: 1000)
    code, out, err = run_cli(["--model=EASE", "--target=tgt"] + [f"--{k}={v}" for k, v in small_domains.items()])
    assert code == 2 and ("EASE: its 120 x 120 item matrices need about 0.5 MiB (40 bytes per item pair) and 1000 bytes "
                          "are available; use ItemKNN (memory: items x k)") in err, err
