"""CATN and the pair's documents, on planted-aspect review domains (recbole_transfer.data.synthetic)."""

import logging

import pytest
import torch

from recbole_transfer import registry
from recbole_transfer.data.synthetic import write_planted_aspects
from recbole_transfer.methods.overlap_cdr.runner import build, pair_configs
from recbole_transfer.pipeline.documents import build_documents
from recbole_transfer.pipeline.pair import build_pair
from recbole_transfer.pipeline.stages import forever

KEYS = {"protocol": "cold_start", "task": "rating", "word_dim": 16, "aspect_dim": 8, "aspects": 3, "conv_filters": 12,
        "max_doc_len": 120, "train_batch_size": 128, "learning_rate": 0.003, "show_progress": False,
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "labeled"}}


@pytest.fixture(scope="module")
def aspects(tmp_path_factory):
    root = tmp_path_factory.mktemp("aspects")
    write_planted_aspects(str(root / "data"), n_users=80, n_items=(30, 30), per_user=(6, 4), seed=3)
    keys = {**KEYS, "data_path": str(root / "data"), "protocol_dir": str(root / "protocols"),
            "checkpoint_dir": str(root / "saved")}
    source_config, config = pair_configs("CATN", "asrc", "atgt", [registry.get_method("overlap_cdr").scenario], keys)
    pair = build_pair(source_config, config)
    return {"pair": pair, "config": config, "root": root}


def _model(aspects):
    torch.manual_seed(0)
    model = build("CATN", aspects["config"], aspects["pair"])
    model.eval()
    return model


def _cold_users(pair, n=4):
    return torch.as_tensor([pair.target.dataset.token2id("user_id", t) for t in pair.split.cold_test[:n]])


def test_documents_come_from_training_rows_only(aspects):
    pair = aspects["pair"]
    docs = pair.documents("review", 120)
    cold = _cold_users(pair, len(pair.split.cold_test))
    assert int(docs.user_docs["target"][cold].count_nonzero()) == 0  # a cold user has no target document
    assert int(docs.user_docs["source"][pair.links.target_to_source[cold]].count_nonzero(dim=1).min()) > 0
    vocab = docs.vocab
    assert vocab[0] == "[PAD]" and len(set(vocab)) == len(vocab)
    words = {vocab[i] for i in docs.user_docs["source"].unique().tolist() if i}
    assert any(w.startswith("s") for w in words) and not any(w.startswith("t") and "_" in w for w in words)


def test_long_documents_are_truncated_with_a_logged_count(aspects, caplog):
    with caplog.at_level(logging.WARNING):
        docs = build_documents(aspects["pair"], "review", 10)
    assert docs.user_docs["source"].shape[1] == 10 and docs.truncated["source users"] > 0
    assert "were truncated" in caplog.text


def test_attention_ignores_padding(aspects):
    model = _model(aspects)
    users, items = _cold_users(aspects["pair"]), torch.tensor([1, 2, 3, 4])
    with torch.no_grad():
        before = model.rate_target(users, items)
        for name in ("user_docs_source", "aux_docs_source", "item_docs_target"):
            table = getattr(model, name)
            setattr(model, name, torch.cat([table, torch.zeros(table.shape[0], 37, dtype=table.dtype)], 1))
        assert torch.allclose(model.rate_target(users, items), before, atol=1e-6)


def test_both_flows_reach_the_shared_correlation_matrix(aspects):
    model = _model(aspects)
    model.train()
    pair = aspects["pair"]
    target = next(iter(pair.target.train_data))
    source = next(iter(pair.source.train_data))
    for flow in (lambda: model.rate_target(target["user_id"], target["item_id"]).sum(),
                 lambda: model.rate_source(source["user_id"], source["item_id"]).sum()):
        model.zero_grad()
        flow().backward()
        assert model.X.grad is not None and float(model.X.grad.abs().sum()) > 0
    model.feeds["source"] = forever(pair.source.train_data)
    model.zero_grad()
    model.calculate_loss(target).backward()
    assert float(model.X.grad.abs().sum()) > 0


def test_a_user_without_source_document_is_scored_by_the_biases(aspects):
    model = _model(aspects)
    users, items = _cold_users(aspects["pair"]), torch.tensor([3, 5, 7, 9])
    with torch.no_grad():
        model.user_docs_source[model.target_to_source[users]] = 0
        got = model.rate_target(users, items)
        biases = model.user_bias(users).squeeze(-1) + model.item_bias(items).squeeze(-1)
    assert torch.allclose(got, biases)
    assert torch.count_nonzero(model.user_bias(users)) == 0  # cold users never trained a bias
