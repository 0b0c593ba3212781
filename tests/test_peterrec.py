"""PeterRec: model patches grafted into RecBole's NextItNet, and the fine-tuning methods of Table 3.

One small NextItNet is pretrained once per module on planted sequences (users draw items from a hidden
cluster, their profile label); every test fine-tunes on top of that checkpoint.
"""

import logging
import os

import pytest
import torch

from recbole_transfer import load_transfer_model, pretrain_source, run_transfer
from recbole_transfer.config import TransferConfig
from recbole_transfer.data.synthetic import write_planted_sequences
from recbole_transfer.errors import TransferConfigError, TransferLayerError
from recbole_transfer.methods.peterrec.model import PeterRec
from recbole_transfer.methods.peterrec.strategy import PatchTransfer
from recbole_transfer.model.layers import Patch
from recbole_transfer.pipeline.scenario import run_scenario
from recbole_transfer.pipeline.two_stage import prepare_domain
from recbole_transfer.request import domain_config
from recbole_transfer.methods.peterrec.tables import method_table
from recbole_transfer.trainer import load_checkpoint

USERS = {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"}
PROFILE = {"metrics": ["Hit"], "topk": [1], "valid_metric": "Hit@1", "eval_args": USERS}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Planted sequences + a label task with 15% of training users labelled + one pretrained NextItNet."""
    root = tmp_path_factory.mktemp("peterrec")
    cwd = os.getcwd()
    os.chdir(root)
    data = str(root / "data")
    write_planted_sequences(data, "seqs", n_users=600, n_items=600, length=10, seed=3)
    config = {
        "data_path": data, "seed": 5, "show_progress": False, "domain_cache_dir": str(root / "domains"),
        "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        # a small network: the test is about mechanics and the planted signal, not capacity
        "embedding_size": 32, "dilations": [1, 2], "MAX_ITEM_LIST_LENGTH": 10, "sequence_length": 10,
        "source_epochs": 20, "train_batch_size": 128, "learning_rate": 0.01, "epochs": 30, "stopping_step": 30,
        "domains": {
            "group": {"base": "seqs", "label": {"field": "group"},
                      "user_holdout": {"valid": 0.2, "test": 0.3, "label_fraction": 0.15},
                      "config": {**PROFILE, "train_batch_size": 32}},
        },
    }
    source = pretrain_source("PeterRec", "seqs", None, config, verbose=False)
    yield {"config": config, "source": source, "root": root}
    os.chdir(cwd)


def fine_tune(planted, method, **extra):
    config = {**planted["config"], "transfer": method, **extra}
    return run_transfer("PeterRec", "seqs", "group", None, config, pretrained=planted["source"], verbose=False)


def fresh_model(planted, **extra):
    config = domain_config("PeterRec", "group", None, {
        **planted["config"], "source_checkpoint": planted["source"].model_file, **extra,
    })
    data = prepare_domain(config)
    return PeterRec(config, data.train_data._dataset), data


def test_nextitnet_yaml_sets_the_ce_requirement(planted):
    config = TransferConfig("NextItNet", "seqs", None, {"data_path": planted["config"]["data_path"]})
    assert config["train_neg_sample_args"]["distribution"] == "none" and config["loss_type"] == "CE"
    assert config["eval_args"]["order"] == "TO"
    assert planted["source"].test_result["hit@10"] > 0  # and pretraining ran through RecBole's trainer


@pytest.mark.parametrize("position", ["serial", "parallel"])
def test_grafted_model_scores_exactly_like_the_pretrained_one(planted, position):
    pretrained, _ = fresh_model(planted)
    PatchTransfer("finecls").apply(pretrained, planted["source"])  # pretrained network, no patches
    grafted, _ = fresh_model(planted)
    PatchTransfer("peterrec", position, width=8).apply(grafted, planted["source"])
    patches = [m for m in grafted.modules() if isinstance(m, Patch)]
    assert len(patches) == (4 if position == "serial" else 2)  # 2 blocks x (conv1, conv2) or one per block
    grafted.head.load_state_dict(pretrained.head.state_dict())
    users = torch.arange(1, grafted.n_users)
    with torch.no_grad():
        assert torch.equal(grafted.user_representation(users), pretrained.user_representation(users))
        before = grafted.user_representation(users)
        patches[0].up.weight.add_(0.1)  # a patch that is not zero changes the output: the check can fail
        assert not torch.equal(grafted.user_representation(users), before)


@pytest.mark.parametrize("method,position", [("peterrec", "serial"), ("peterrec", "parallel"), ("finelast", "serial")])
def test_fine_tuning_keeps_every_pretrained_parameter_bit_identical(planted, method, position):
    result = fine_tune(planted, method, patch_position=position, epochs=3)
    model, source = result["trained_model"], planted["source"].state_dict
    moved, kept = [], []
    for name, param in model.backbone.named_parameters():
        key = name.replace(".base.", ".") if ".patch." not in name else None
        if key is None:
            moved.append(name)
            continue
        changed = not torch.equal(param.detach(), source[key])
        (moved if changed else kept).append(name)
        if not param.requires_grad:
            assert not changed, f"frozen pretrained parameter {name} changed"
    trained = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    if method == "peterrec":
        assert trained and all(".patch." in n for n in trained)
        ups = [m.up.weight for m in model.modules() if isinstance(m, Patch)]
        assert all(u.abs().sum() > 0 for u in ups)  # every patch learned something
    else:  # finelast: only the last block moves
        assert set(moved) <= trained and all(n.startswith("residual_blocks.1.") for n in trained)
    assert result["trainable"]["trainable_no_head"] == sum(p.numel() for n, p in model.backbone.named_parameters() if n in trained)


def test_delta_checkpoint_reloads_onto_the_pretrained_model_under_another_seed(planted):
    result = fine_tune(planted, "peterrec", epochs=3)
    checkpoint = load_checkpoint(result["model_file"])
    assert checkpoint["delta_of"] == os.path.abspath(planted["source"].model_file)
    saved = set(checkpoint["state_dict"])
    assert not any(k.startswith("backbone.") and ".patch." not in k for k in saved)  # no pretrained weight stored
    assert "cls_embedding" in saved and "head.weight" in saved
    config, model, _, _, _, test = load_transfer_model(result["model_file"], {"seed": 12345})
    trained = result["trained_model"].eval()
    with torch.no_grad():
        for batch in test:
            interaction = batch[0]
            assert torch.equal(model.full_sort_predict(interaction), trained.full_sort_predict(interaction))
    assert os.path.getsize(result["model_file"]) < os.path.getsize(planted["source"].model_file)


def test_pretraining_lets_peterrec_learn_a_label_that_peterzero_does_not(planted):
    peter = fine_tune(planted, "peterrec")["test_result"]["hit@1"]
    zero = fine_tune(planted, "peterzero")["test_result"]["hit@1"]
    assert peter >= 0.8, peter
    assert peter - zero >= 0.2, (peter, zero)


def test_table3_run_reports_every_method_with_its_trainable_share(planted):
    rows = run_scenario(
        "PeterRec", "seqs", ["group"], None, {**planted["config"], "epochs": 1, "source_checkpoint": planted["source"].model_file},
        arms=["pop", "bag", "finecls", "finelast", "fineall", "peterrec/serial", "peterrec/parallel", "peterzero/serial"],
    )
    table = method_table(rows)
    counts = {r["arm"]: r["trainable"] for r in rows if r["trainable"]}
    network = counts["fineall"]["network"]
    assert counts["fineall"]["trainable_no_head"] == network and counts["finecls"]["trainable_no_head"] == 0
    assert 0 < counts["peterrec/parallel"]["trainable_no_head"] < counts["peterrec/serial"]["trainable_no_head"] < network
    for arm in ["pop", "bag", *counts]:
        assert f"| {arm} " in table
    assert "group accuracy" in table and "100.00%" in table


def test_layer_norm_option_trains_the_second_layer_norms_and_counts_them(planted):
    base, _ = fresh_model(planted)
    base_report = PatchTransfer("peterrec").apply(base, planted["source"])
    with_ln, _ = fresh_model(planted)
    report = PatchTransfer("peterrec", layer_norm=True).apply(with_ln, planted["source"])
    extra = report.counts["trainable"] - base_report.counts["trainable"]
    assert extra == 2 * 2 * 32  # 2 blocks x ln2 (weight + bias) x 32 channels
    assert report.counts["trainable"] == sum(p.numel() for p in with_ln.parameters() if p.requires_grad)
    assert "ln2" in str(report)


@pytest.mark.parametrize("extra,error,listed", [
    ({"patch_position": "diagonal"}, TransferConfigError, "serial, parallel"),
    ({"transfer": "config-1"}, TransferConfigError, "a transfer of method 'layer_transfer'; use --model=TransferMLP"),
    ({"transfer": "fine_all"}, TransferConfigError, "peterrec, peterzero, finecls, finelast, fineall"),
    ({"patch_width": 0}, TransferConfigError, ">= 1"),
    ({"backbone_modules": {"embedding": "item_embedding", "blocks": "residual_block", "serial": ["conv1"]}},
     TransferLayerError, "item_embedding, residual_blocks, final_layer"),
    ({"backbone_modules": {"embedding": "item_embedding", "blocks": "residual_blocks", "serial": ["conv3"]}},
     TransferLayerError, "conv1, ln1, conv2, ln2"),
])
def test_bad_patch_config_raises_before_training_and_lists_what_exists(planted, extra, error, listed):
    config = {**planted["config"], "source_checkpoint": planted["source"].model_file, **extra}
    with pytest.raises(error) as info:
        run_transfer("PeterRec", "seqs", "group", None, config, verbose=False)
    assert listed in str(info.value)


def test_patch_method_on_a_model_without_blocks_is_refused(planted):
    with pytest.raises(TransferConfigError, match="--model=PeterRec"):
        run_transfer("TransferMLP", "seqs", "group", None, {**planted["config"], "transfer": "peterrec"})


def test_cli_fine_tunes_then_evaluates_the_delta_checkpoint_and_refuses_bad_input(planted, tmp_path, run_cli, caplog):
    import yaml

    config = {k: v for k, v in planted["config"].items() if k not in ("seed",)}
    (tmp_path / "planted.yaml").write_text(yaml.safe_dump({**config, "epochs": 2}))
    # no --source: the checkpoint alone describes the pretrained network
    base = ["--model=PeterRec", "--target=group", f"--config_files={tmp_path / 'planted.yaml'}",
            f"--source_checkpoint={planted['source'].model_file}"]
    caplog.set_level(logging.INFO, logger="recbole_transfer")  # the transfer report is logged
    code, out, err = run_cli([*base, "--transfer=peterrec", "--patch_position=parallel"], cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert "transfer=peterrec/parallel  test:" in out and "grafted patch, trained" in caplog.text
    test_line = [line for line in out.splitlines() if line.startswith("transfer=")][0]
    model_file = out.split("model file: ")[1].strip()
    code, out, err = run_cli([f"--evaluate={model_file}"], cwd=tmp_path)
    assert code == 0, err[-3000:]
    assert test_line.split("test: ")[1] in out
    code, _out, err = run_cli([*base, "--transfer=peterrec", "--patch_position=diagonal"], cwd=tmp_path)
    assert code == 2 and "must be one of serial, parallel" in err and "Traceback" not in err


def test_popularity_baseline_predicts_the_majority_training_label(planted):
    from collections import Counter

    result = run_transfer("Popularity", None, "group", None, {**planted["config"], "transfer": "none", "epochs": 1},
                          verbose=False)
    data = result["data"]
    item_field = data.config["ITEM_ID_FIELD"]
    train_labels = Counter(data.train_data._dataset.inter_feat[item_field].tolist())
    majority = train_labels.most_common(1)[0][0]
    test_labels = data.test_data._dataset.inter_feat[item_field].tolist()
    assert result["test_result"]["hit@1"] == round(test_labels.count(majority) / len(test_labels), 4)


def test_bag_of_items_scores_are_the_mean_of_the_users_source_item_weights(planted):
    from recbole_transfer.methods.peterrec.bag_of_items import BagOfItems
    from recbole_transfer.methods.peterrec.source import load_source

    config = domain_config("BagOfItems", "group", None, {
        **planted["config"], "transfer": "none", "source_checkpoint": planted["source"].model_file,
    })
    data = prepare_domain(config)
    model = BagOfItems(config, data.train_data._dataset)
    torch.nn.init.normal_(model.weights.weight)
    source = load_source(planted["source"].model_file)
    user = 3
    items = source.by_user[source.token2id[data.dataset.field2id_token[config["USER_ID_FIELD"]][user]]]
    expected = model.weights.weight[torch.as_tensor(items)].mean(0) + model.bias
    assert len(items) == 10 and torch.allclose(model._logits(torch.tensor([user]))[0], expected, atol=1e-6)


def test_a_source_checkpoint_written_by_a_fine_tuning_run_reloads_as_its_network(planted):
    """The source stage of `--transfer=peterrec` writes NextItNet with `transfer: peterrec` in its config:
    reloading it (--evaluate, --importance) rebuilds the network and grafts nothing."""
    source = pretrain_source("PeterRec", "seqs", None, {**planted["config"], "transfer": "peterrec", "source_epochs": 1},
                             verbose=False)
    config, model, *_ = load_transfer_model(source.model_file)
    assert config["model"] == "NextItNet" and config["transfer"] == "peterrec"
    assert all(torch.equal(v, source.state_dict[k]) for k, v in model.state_dict().items())


def test_the_source_stage_gets_no_key_only_the_transfer_reads(planted, caplog):
    """A bag-of-items arm carries PeterRec's baseline trial (its patch keys); the source NextItNet is trained alone,
    so its config gets the user's other keys but not those, and warns about nothing."""
    from recbole_transfer.pipeline.two_stage import source_request
    from recbole_transfer.request import Request

    request = Request("BagOfItems", "seqs", None, (), {**planted["config"], "patch_position": "parallel",
                                                     "patch_width": 8, "learning_rate": 0.02})
    source = source_request(request, "NextItNet")
    assert source.model == "NextItNet" and "patch_position" not in source.config_dict and "patch_width" not in source.config_dict
    assert source.config_dict["learning_rate"] == 0.02 and source.config_dict["data_path"] == planted["config"]["data_path"]
    with caplog.at_level(logging.WARNING):
        source.config("seqs", key="source")
    assert not [r for r in caplog.records if "belongs to method" in r.getMessage()], caplog.text
    with caplog.at_level(logging.WARNING):  # without the filter, the warning this removes
        request.with_keys(model="NextItNet").config("seqs", key="source")
    assert any("'patch_position' belongs to method peterrec" in r.getMessage() for r in caplog.records)
    same = Request("PeterRec", "seqs", None, (), planted["config"])
    assert source_request(same, "PeterRec").config_dict == same.config_dict
