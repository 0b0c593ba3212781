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
