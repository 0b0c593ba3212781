"""End-to-end transfer runs: frozen weights, optimizer, checkpoints, equivalence with RecBole."""

import pickle

import pytest
import torch

from recbole_transfer import load_transfer_model, pretrain_source, run_transfer
from recbole_transfer.errors import TransferCheckpointError, TransferConfigError
from recbole_transfer.trainer import TransferTrainer, load_checkpoint


@pytest.fixture
def pretrained(small_domains):
    return pretrain_source("TransferMLP", "src", None, small_domains, verbose=False)


def test_frozen_layers_are_bit_identical_after_target_training(small_domains, pretrained):
    result = run_transfer("TransferMLP", "src", "tgt", None, {**small_domains, "transfer": "config-5"},
                          pretrained=pretrained, verbose=False)
    model = result["trained_model"]
    frozen = [f"mlp_layers.mlp_layers.{i}.{p}" for i in (4, 7, 10) for p in ("weight", "bias")]
    state = model.state_dict()
    for name in frozen:
        assert torch.equal(state[name], pretrained.state_dict[name]), name
        assert not dict(model.named_parameters())[name].requires_grad
    # fc1 was not transferred: trained in the target, so it differs from the source.
    assert not torch.equal(state["mlp_layers.mlp_layers.1.weight"], pretrained.state_dict["mlp_layers.mlp_layers.1.weight"])
    assert result["relatedness"] is not None and result["relatedness"] >= 0
    assert "trainable params:" in str(result["transfer_report"])


def test_optimizer_holds_exactly_the_trainable_parameters(small_domains, pretrained):
    result = run_transfer("TransferMLP", "src", "tgt", None, {**small_domains, "transfer": "config-1", "epochs": 1},
                          pretrained=pretrained, verbose=False)
    trainer = result["trainer"]  # the trainer that trained the target
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    trainable = {id(p) for p in result["trained_model"].parameters() if p.requires_grad}
    assert in_optimizer == trainable and len(trainable) == 4  # 2 embeddings + scoring layer weight and bias
    # A later unfreeze without rebuilding is caught by the check.
    result["trained_model"].mlp_layers.mlp_layers[1].weight.requires_grad_(True)
    with pytest.raises(AssertionError, match="optimizer holds"):
        trainer.check_optimizer()
    trainer.rebuild_optimizer()


def test_checkpoint_loads_weights_only_and_reproduces_metrics(small_domains, pretrained):
    result = run_transfer("TransferMLP", "src", "tgt", None, {**small_domains, "transfer": "config-6"},
                          pretrained=pretrained, verbose=False)
    checkpoint = torch.load(result["model_file"], weights_only=True)
    assert checkpoint["format"] == "recbole_transfer/1" and checkpoint["config"]["transfer"] == "config-6"
    config, model, _dataset, _train, _valid, test = load_transfer_model(result["model_file"])
    for name, param in model.state_dict().items():
        assert torch.equal(param, result["trained_model"].state_dict()[name])
    again = TransferTrainer(config, model, stage="analysis").evaluate(test, load_best_model=False)
    assert dict(again) == dict(result["test_result"])
    # The source checkpoint is reusable too, and carries the source user counts.
    reused = pretrain_source("TransferMLP", "src", None, {**small_domains, "source_checkpoint": pretrained.model_file})
    assert (reused.user_counts == pretrained.user_counts).all()


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 4")  # the foreign file is written so on purpose
def test_foreign_checkpoints_are_refused(workdir, monkeypatch):
    from recbole.config import Config

    monkeypatch.setattr("sys.argv", ["run_recbole.py"])
    pickled = workdir / "recbole_style.pth"  # what RecBole's Trainer writes: its Config, pickled
    torch.save({"config": Config("BPR", "ml-100k"), "state_dict": {}}, pickled, pickle_protocol=4)
    with pytest.raises(TransferCheckpointError, match="weights_only=True"):
        load_checkpoint(pickled)
    plain = workdir / "plain.pth"
    torch.save({"state_dict": {}}, plain)
    with pytest.raises(TransferCheckpointError, match="not a recbole_transfer checkpoint"):
        load_checkpoint(plain)
    junk = workdir / "junk.pth"
    junk.write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(TransferCheckpointError):
        load_checkpoint(junk)
    with pytest.raises(TransferCheckpointError, match="file not found"):
        load_checkpoint(workdir / "missing.pth")


def test_transfer_needs_a_source(small_domains):
    with pytest.raises(TransferConfigError, match="source"):
        run_transfer("TransferMLP", None, "tgt", None, {**small_domains, "transfer": "config-1"})


@pytest.mark.parametrize("model_name, arm", [("NeuMF", "config-7"), ("DMF", ["fc2"])])
def test_transfer_works_on_recbole_models(small_domains, model_name, arm):
    extra = {"mlp_hidden_size": [64, 32, 16, 8]} if model_name == "NeuMF" else {}
    source = pretrain_source(model_name, "src", None, {**small_domains, **extra}, verbose=False)
    result = run_transfer(model_name, "src", "tgt", None, {**small_domains, **extra, "transfer": arm},
                          pretrained=source, verbose=False)
    frozen = [n for n, p in result["trained_model"].named_parameters() if not p.requires_grad]
    assert frozen and all(torch.equal(result["trained_model"].state_dict()[n], source.state_dict[n]) for n in frozen)
    assert 0.0 <= result["test_result"]["hit@10"] <= 1.0


def test_full_ranking_protocol(small_domains, pretrained):
    full = {"eval_args": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "RO", "mode": "full"}}
    result = run_transfer("TransferMLP", "src", "tiny", None, {**small_domains, **full, "transfer": "none"},
                          verbose=False)  # 'tiny' is too small for uni99 but fine for full ranking
    assert result["config"]["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert 0.0 <= result["test_result"]["hit@10"] <= 1.0
    result = run_transfer("TransferMLP", "src", "tgt", None, {**small_domains, **full, "transfer": "config-1"},
                          pretrained=pretrained, verbose=False)
    assert "hit@10" in result["test_result"]
