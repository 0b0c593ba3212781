"""Layer groups and the LayerTransfer strategy on our model and RecBole's."""

import pytest
import torch

from recbole_transfer import TransferConfig
from recbole_transfer.errors import TransferConfigError, TransferLayerError
from recbole_transfer.pipeline.two_stage import prepare_domain
from recbole_transfer.request import domain_config
from recbole_transfer.methods.layer_transfer.strategy import PAPER_CONFIGS, LayerTransfer, layer_groups, parse_transfer
from recbole_transfer.transfer import SourceModel, TransferReport


def build(model_name, dataset, config_dict, **extra):
    config = domain_config(model_name, dataset, None, {**config_dict, **extra})
    data = prepare_domain(config)
    return config["model"] and config.model_class(config, data.train_data._dataset)


def test_paper_configs_are_table_1():
    assert PAPER_CONFIGS["config-1"] == ["fc1", "fc2", "fc3", "fc4"]
    assert PAPER_CONFIGS["config-4"] == ["fc1"]
    assert PAPER_CONFIGS["config-5"] == ["fc2", "fc3", "fc4"]
    assert PAPER_CONFIGS["config-7"] == ["fc4"]
    assert parse_transfer("none") == ("none", [])
    assert parse_transfer("fc3, fc4") == ("fc3,fc4", ["fc3", "fc4"])
    with pytest.raises(TransferConfigError, match="config-9.*allowed: none, config-1"):
        parse_transfer("config-9")


def test_groups_of_our_model_neumf_and_dmf(small_domains):
    mlp = build("TransferMLP", "src", small_domains)
    assert layer_groups(mlp) == {f"fc{k}": [f"mlp_layers.mlp_layers.{i}"] for k, i in zip(range(1, 5), (1, 4, 7, 10))}
    neumf = build("NeuMF", "src", small_domains, mlp_hidden_size=[64, 32, 16, 8], mlp_embedding_size=32)
    assert layer_groups(neumf)["fc4"] == ["mlp_layers.mlp_layers.10"]
    dmf = build("DMF", "src", small_domains)
    assert layer_groups(dmf) == {
        "fc1": ["user_fc_layers.mlp_layers.1", "item_fc_layers.mlp_layers.1"],
        "fc2": ["user_fc_layers.mlp_layers.4", "item_fc_layers.mlp_layers.4"],
    }


@pytest.mark.parametrize("model_name, extra", [("TransferMLP", {}), ("NeuMF", {"mlp_hidden_size": [64, 32, 16, 8]}), ("DMF", {})])
def test_apply_copies_and_freezes_exactly_the_named_layers(small_domains, model_name, extra):
    source = build(model_name, "src", small_domains, **extra)
    target = build(model_name, "tgt", small_domains, **extra)
    arm = "config-6" if model_name != "DMF" else "config-4"
    before = {n: p.detach().clone() for n, p in target.named_parameters()}
    strategy = LayerTransfer(arm, "freeze")
    assert strategy.check(target, SourceModel(source.state_dict())) is None  # check changes nothing ...
    assert all(torch.equal(p, before[n]) and p.requires_grad for n, p in target.named_parameters())
    report = strategy.apply(target, SourceModel(source.state_dict()))  # ... apply does
    assert isinstance(report, TransferReport)
    moved = set()
    for module in [m for group in PAPER_CONFIGS[arm] for m in layer_groups(target)[group]]:
        for pname, _ in target.get_submodule(module).named_parameters():
            moved.add(f"{module}.{pname}")
    assert moved
    for name, param in target.named_parameters():
        if name in moved:
            assert torch.equal(param, source.state_dict()[name]) and not param.requires_grad
        else:
            assert torch.equal(param, before[name]) and param.requires_grad
    assert {name for name, _shape, action in report.rows if action == "copied, frozen"} == moved
    trainable = sum(p.numel() for p in target.parameters() if p.requires_grad)
    assert report.counts == {"trainable": trainable, "all": sum(p.numel() for p in target.parameters())}
    text = str(report)
    assert "copied, frozen" in text and "trainable params:" in text and "trainable%" in text


def test_finetune_mode_copies_but_keeps_trainable(small_domains):
    source, target = build("TransferMLP", "src", small_domains), build("TransferMLP", "tgt", small_domains)
    LayerTransfer("config-7", "finetune").apply(target, SourceModel(source.state_dict()))
    assert target.mlp_layers.mlp_layers[10].weight.requires_grad
    assert torch.equal(target.mlp_layers.mlp_layers[10].weight, source.mlp_layers.mlp_layers[10].weight)


def test_unknown_layer_lists_available_and_nothing_changes(small_domains):
    source, target = build("TransferMLP", "src", small_domains), build("TransferMLP", "tgt", small_domains)
    before = {n: p.detach().clone() for n, p in target.named_parameters()}
    with pytest.raises(TransferLayerError, match=r"'fc9'.*Layer groups: fc1=.*Modules with parameters:"):
        LayerTransfer(["fc3", "fc9"]).apply(target, SourceModel(source.state_dict()))
    assert all(torch.equal(p, before[n]) and p.requires_grad for n, p in target.named_parameters())
    with pytest.raises(TransferLayerError, match=r"'fc5'.*fc1=.*fc4="):
        LayerTransfer(["fc5"]).apply(target, SourceModel(source.state_dict()))


def test_shape_mismatch_is_an_error_before_any_change(small_domains):
    source = build("TransferMLP", "src", small_domains, mlp_hidden_size=[64, 32, 16, 4])
    target = build("TransferMLP", "tgt", small_domains)
    before = {n: p.detach().clone() for n, p in target.named_parameters()}
    with pytest.raises(TransferLayerError, match=r"shape \(4, 16\) in the source but \(8, 16\) in the target"):
        LayerTransfer("config-1").apply(target, SourceModel(source.state_dict()))
    assert all(torch.equal(p, before[n]) for n, p in target.named_parameters())
    # Embeddings are domain-specific: naming them explicitly fails on shape (different user counts).
    with pytest.raises(TransferLayerError, match="user_embedding.weight"):
        LayerTransfer(["user_embedding"]).apply(target, SourceModel(build("TransferMLP", "src", small_domains).state_dict()))


def test_configured_containers_override(small_domains):
    config = TransferConfig("TransferMLP", "ml-100k")
    mlp = build("TransferMLP", "src", small_domains)
    with pytest.raises(TransferConfigError, match="'mlp'.*not found"):
        layer_groups(mlp, ["mlp"])
    assert layer_groups(mlp, config["transfer_containers"] or ["mlp_layers"])["fc1"] == ["mlp_layers.mlp_layers.1"]
