"""End-to-end transfer runs: frozen weights, optimizer, checkpoints, equivalence with RecBole."""

import copy
import math
import os
import re
import pickle

import numpy as np
import pytest
import torch
from recbole.data.interaction import Interaction

from recbole_transfer import load_transfer_model, pretrain_source, run_transfer
from recbole_transfer.errors import TransferCheckpointError, TransferConfigError
from recbole_transfer.trainer import TransferTrainer, load_checkpoint


def per_user_counts(keys, name, each):
    """The number of users of a planted domain's atomic file, checking that every user has ``each`` interactions."""
    with open(os.path.join(keys["data_path"], name, f"{name}.inter"), encoding="utf-8") as f:
        users = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    counts = np.unique(users, return_counts=True)[1]
    assert set(counts.tolist()) == {each}
    return len(counts)


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
    # KL relatedness of the planted domains, by hand: every source user has 12 interactions, every target user 6; 20
    # bins (counts 1..20) with a pseudo-count of 1 each
    n_source, n_target = per_user_counts(small_domains, "src", 12), per_user_counts(small_domains, "tgt", 6)
    p_12, p_other = (n_source + 1) / (n_source + 20), 1 / (n_source + 20)
    q_6, q_other = (n_target + 1) / (n_target + 20), 1 / (n_target + 20)
    expected = p_12 * math.log(p_12 / q_other) + p_other * math.log(p_other / q_6) + 18 * p_other * math.log(p_other / q_other)
    assert result["relatedness"] == pytest.approx(expected, rel=1e-9)
    itself = run_transfer("TransferMLP", "src", "src", None, {**small_domains, "transfer": "config-5", "epochs": 1},
                          pretrained=pretrained, verbose=False)
    assert itself["relatedness"] == 0.0  # the same domain, counted the same way on both sides
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


# Full-sort evaluation, where RecBole's own split decides everything scored: BPR on a random-order random split (the
# data seed's shuffle matters), GRU4Rec on RecBole's time-ordered leave-one-out of each sequence.
RECBOLE_RUNS = {
    "BPR": {"eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
            "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}},
    "GRU4Rec": {"eval_args": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "TO", "mode": "full"},
                "train_neg_sample_args": None, "loss_type": "CE", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
                "embedding_size": 16, "hidden_size": 16},
}


def _pairs(dataset):
    """Sorted (user token, item token) rows of one part of a split."""
    feat = dataset.inter_feat
    users = dataset.id2token(dataset.uid_field, feat[dataset.uid_field].numpy())
    items = dataset.id2token(dataset.iid_field, feat[dataset.iid_field].numpy())
    return sorted(zip(users.tolist(), items.tolist()))


@pytest.fixture
def no_anomaly_mode():
    """RecBole's sequential models (its sine.py, imported with them) switch autograd's anomaly mode on: a check that
    changes no number and makes GRU4Rec's backward pass several times slower. Off for the test, then as it was."""
    before = torch.is_anomaly_enabled()
    import recbole.model.sequential_recommender  # noqa: F401

    torch.autograd.set_detect_anomaly(False)
    yield
    torch.autograd.set_detect_anomaly(before)


@pytest.mark.parametrize("model_name", sorted(RECBOLE_RUNS))
def test_no_transfer_gives_exactly_recbole_metrics_on_full_sort(small_domains, monkeypatch, no_anomaly_mode, model_name):
    """``transfer: none`` with data_seed = seed is plain RecBole: the same split (RecBole's build() under the same
    seed), the same training, bit-identical best validation and test metrics."""
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.quick_start import run_recbole
    from recbole.utils import init_seed

    monkeypatch.setattr("sys.argv", ["run_recbole.py"])  # RecBole's Config reads the command line
    keys = {**small_domains, **RECBOLE_RUNS[model_name], "epochs": 3, "metrics": ["Recall", "MRR", "NDCG", "Hit"],
            "topk": [5, 10], "valid_metric": "MRR@10"}
    plain = run_recbole(model=model_name, dataset="src", config_dict=dict(keys), saved=False)
    ours = run_transfer(model_name, None, "src", None, {**keys, "transfer": "none", "data_seed": keys["seed"]},
                        saved=False, verbose=False)
    assert ours["config"]["eval_args"]["mode"] == {"valid": "full", "test": "full"}
    assert dict(ours["best_valid_result"]) == dict(plain["best_valid_result"])
    assert dict(ours["test_result"]) == dict(plain["test_result"])
    assert plain["test_result"]["recall@10"] > 0  # a trained model, not two empty evaluations
    # the split itself: every part holds RecBole's rows
    config = Config(model=model_name, dataset="src", config_dict=dict(keys))
    init_seed(config["seed"], config["reproducibility"])
    recbole_parts = data_preparation(config, create_dataset(config))
    data = ours["data"]
    for ours_part, recbole_part in zip((data.train_data, data.valid_data, data.test_data), recbole_parts):
        assert _pairs(ours_part._dataset) == _pairs(recbole_part._dataset)


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


def _two_steps(config, model, sparse, loss=None):
    """Two optimizer steps of a copy of ``model`` (users 1, 2 then users 3, 4), with ``sparse_tables`` set; the user
    table before and after each step."""
    model = copy.deepcopy(model)
    config["sparse_tables"] = sparse
    trainer = TransferTrainer(config, model, stage="analysis")
    uid, iid = model.USER_ID, model.ITEM_ID
    tables = [model.user_embedding.weight.detach().clone()]
    for users in ([1, 2], [3, 4]):
        batch = Interaction({uid: torch.tensor(users), iid: torch.tensor([1, 2]), model.NEG_ITEM_ID: torch.tensor([3, 4])})
        trainer.optimizer.zero_grad()
        (loss or model.calculate_loss)(batch).backward()
        trainer.optimizer.step()
        tables.append(model.user_embedding.weight.detach().clone())
    return trainer, tables


def test_sparse_tables_step_only_the_rows_of_their_batch(small_domains):
    """``sparse_tables``: lazy Adam. Its first step equals dense Adam's; at the second, the rows of the first batch stay
    where they are (dense Adam moves them on their momentum); rows in no batch never move."""
    from recbole_transfer.trainer.trainer import JoinedOptimizer

    result = run_transfer("BPR", None, "tgt", None, {**small_domains, "epochs": 1}, verbose=False)
    config, model, *_ = load_transfer_model(result["model_file"])
    _, dense = _two_steps(config, model, False)
    trainer, lazy = _two_steps(config, model, True)
    assert isinstance(trainer.optimizer, JoinedOptimizer) and model.user_embedding.sparse is False  # a copy trained
    assert torch.allclose(dense[1], lazy[1], atol=1e-7) and not torch.equal(lazy[1][1:3], lazy[0][1:3])
    assert torch.equal(lazy[2][1:3], lazy[1][1:3]) and not torch.equal(dense[2][1:3], dense[1][1:3])
    assert not torch.equal(lazy[2][3:5], lazy[1][3:5])
    assert torch.equal(lazy[2][5:], lazy[0][5:]) and torch.equal(lazy[2][0], lazy[0][0])


def test_sparse_tables_refuse_what_sparse_adam_cannot_do(small_domains):
    result = run_transfer("BPR", None, "tgt", None, {**small_domains, "epochs": 1}, verbose=False)
    config, model, *_ = load_transfer_model(result["model_file"])
    for key, value, named in (("learner", "sgd", "got learner 'sgd'"), ("weight_decay", 0.01, "weight_decay 0.01,"),
                              ("clip_grad_norm", {"max_norm": 1.0}, "clip_grad_norm {'max_norm': 1.0}")):
        config[key] = value
        with pytest.raises(TransferConfigError, match=f"sparse_tables: True takes learner: adam.*{re.escape(named)}"):
            _two_steps(config, model, True)
        config[key] = {"learner": "adam", "weight_decay": 0.0, "clip_grad_norm": None}[key]

    model_copy = copy.deepcopy(model)
    config["sparse_tables"] = True
    trainer = TransferTrainer(config, model_copy, stage="analysis")
    batch = Interaction({model.USER_ID: torch.tensor([1]), model.ITEM_ID: torch.tensor([1]),
                         model.NEG_ITEM_ID: torch.tensor([2])})
    # a loss that reads the user table whole: its gradient is dense
    (model_copy.calculate_loss(batch) + model_copy.user_embedding.weight.pow(2).sum()).backward()
    with pytest.raises(TransferConfigError, match="'user_embedding.weight' got a dense gradient"):
        trainer.optimizer.step()
    # a checkpoint's optimizer state resumes only under the sparse_tables it was saved with, both ways
    for saved_with in (True, False):
        config["sparse_tables"] = saved_with
        saving = TransferTrainer(config, copy.deepcopy(model), stage="analysis")
        saving._save_checkpoint(0, verbose=False)
        config["sparse_tables"] = not saved_with
        with pytest.raises(TransferCheckpointError, match="resume with"):
            TransferTrainer(config, copy.deepcopy(model), stage="analysis").resume_checkpoint(saving.saved_model_file)
