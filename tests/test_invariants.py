"""Shared-module transfer of MMT-Net (issue 6): one dense source, sparse targets, planted context.

The planted domains carry their signal in the interaction's context only (``write_planted_context``): which
(mood, slot) points to which item cluster is the same rule in every domain, items and users are the
domain's own. A source-trained context / clustering / ranking stack carries that rule to a sparse target;
the same stack, random and frozen, cannot.
"""

import json
import os
import re

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from recbole_transfer import load_transfer_model, pretrain_source, run_transfer
from recbole_transfer.config import TransferConfig
from recbole_transfer.data import id_tokens
from recbole_transfer.data.context import align_tokens
from recbole_transfer.data.synthetic import write_planted_context
from recbole_transfer.errors import TransferConfigError, TransferDataError
from recbole_transfer.methods.mmtnet.model import InputPoint
from recbole_transfer.methods.mmtnet.strategy import SharedModuleTransfer
from recbole_transfer.pipeline.two_stage import build_model, prepare_domain
from recbole_transfer.request import domain_config
from recbole_transfer.registry import get_method, method_of
from recbole_transfer.report import best_by_kind
from recbole_transfer.trainer import TransferTrainer
from recbole_transfer.tune.space import SearchSpace

KEYS = {
    "context_fields": ["mood", "slot"], "show_progress": False, "seed": 3, "epochs": 30,
    "load_col": {"inter": ["user_id", "item_id", "timestamp", "mood", "slot"]},
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """A dense planted source (200 users x 20) trained once, and a sparse target (200 users x 5)."""
    folder = tmp_path_factory.mktemp("planted_context")
    cwd = os.getcwd()
    os.chdir(folder)
    write_planted_context(str(folder), "src", n_users=200, per_user=20, seed=1)
    write_planted_context(str(folder), "tgt", n_users=200, per_user=5, seed=2)
    keys = {**KEYS, "data_path": str(folder)}
    pretrained = pretrain_source("MMTNet", "src", None, {**keys, "epochs": 15}, verbose=False)
    yield keys, pretrained
    os.chdir(cwd)


def transfer(planted, method, **extra):
    keys, pretrained = planted
    return run_transfer("MMTNet", "src", "tgt", None, {**keys, "transfer": method, **extra}, pretrained=pretrained,
                        verbose=False)


@pytest.mark.slow  # four 15-epoch fits: about 7 s
def test_transfer_beats_scratch_and_the_random_control_does_not(planted):
    # 15 epochs: the gaps (about 0.4 over scratch; the control within 0.05 of it) are those of 30 epochs, seeds 1-4
    hit = {m: transfer(planted, m, epochs=15)["test_result"]["hit@10"] for m in ("none", "anneal", "drr", "random")}
    assert hit["drr"] >= hit["none"] + 0.15, hit
    assert hit["anneal"] >= hit["none"] + 0.15, hit
    assert hit["random"] <= hit["none"] + 0.08 and hit["random"] <= hit["drr"] - 0.15, hit


def shared_state(model):
    return {k: v.clone() for k, v in model.state_dict().items()
            if k.split(".")[0] in type(model).shared_modules and ".adapter." not in k}


@pytest.mark.parametrize("method", ["drr", "frozen"])
def test_drr_keeps_the_shared_modules_bit_identical_and_tables_aligned_by_token(planted, method):
    _keys, pretrained = planted
    result = transfer(planted, method)
    model = result["trained_model"]
    target_tokens = id_tokens(result["data"].dataset)
    tables = model.token_tables()
    for key, value in shared_state(model).items():
        source = pretrained.state_dict[key]
        if key in tables:  # rows moved by token: the same token has the same row, whatever its id
            rows = align_tokens(pretrained.id_tokens[tables[key]], target_tokens[tables[key]])
            assert (rows[1:] >= 0).all()
            assert torch.equal(value[1:], source[rows[1:]])
        else:  # weights and the source's input statistics, untouched by training
            assert torch.equal(value, source), key
    if method == "frozen":
        return
    adapters = [p for n, p in model.named_parameters() if ".adapter.up." in n]
    assert len(adapters) == 8 and any(p.abs().sum() > 0 for p in adapters)  # the adapters did train
    assert result["trainable"]["trainable"] == result["trainable"]["own"] + result["trainable"]["adapters"]


def test_adapters_start_at_zero_so_the_target_scores_as_the_source_modules_do(planted):
    keys, pretrained = planted
    data = prepare_domain(domain_config("MMTNet", "tgt", None, keys))
    batch = next(iter(data.train_data))
    scores = {}
    for method in ("none", "frozen", "drr"):
        model = build_model(data)  # the same seed: the same target embeddings in every copy
        strategy = SharedModuleTransfer(method)
        if method != "none":
            strategy.apply(model, pretrained, data)
        model.eval()
        scores[method] = model.predict(batch)
    assert torch.equal(scores["drr"], scores["frozen"])  # x + R(x) with R = 0 at graft time
    assert not torch.allclose(scores["frozen"], scores["none"])  # and the source modules did change the scores


@pytest.mark.parametrize("sparse", [False, True])
def test_annealing_unfreezes_after_the_warm_up_with_a_cooling_learning_rate(planted, sparse):
    """Also with ``sparse_tables``: the unfrozen shared modules join the dense optimizer in a group of their own."""
    keys, pretrained = planted
    keys = {**keys, "sparse_tables": sparse}
    seen = []

    def on_epoch(epoch, trainer, _valid, _last):
        group = trainer.optimizer.param_groups
        seen.append((epoch, trainer.model.ranking.hidden.weight.detach().clone(), [g["lr"] for g in group]))

    run_transfer("MMTNet", "src", "tgt", None, {**keys, "transfer": "anneal", "epochs": 4, "stopping_step": 10,
                                               "anneal_warmup": 2, "learning_rate": 0.002},
                 pretrained=pretrained, verbose=False, on_epoch=on_epoch)
    source = pretrained.state_dict["ranking.hidden.weight"]
    assert [e for e, _, _ in seen] == [1, 2, 3, 4]
    assert torch.equal(seen[0][1], source) and torch.equal(seen[1][1], source)  # frozen during the warm-up
    assert not torch.equal(seen[2][1], source)
    assert seen[1][2] == [0.002]  # one group: the target's own embeddings
    assert seen[2][2] == pytest.approx([0.002, 0.0002]) and seen[3][2] == pytest.approx([0.002, 0.0002 * 0.8])


def test_input_point_keeps_the_source_statistics_and_an_adapter_adds_the_drr_penalty():
    point = InputPoint(3)
    point.train()
    batches = [torch.randn(50, 3) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([1.0, -1.0, 0.0]) for _ in range(4)]
    for x in batches:
        assert torch.equal(point(x), x)
    everything = torch.stack(batches)
    assert torch.allclose(point.mean, everything.mean((0, 1)), atol=1e-6)  # the average of the batches
    assert torch.allclose(point.var, everything.var(1, unbiased=False).mean(0), atol=1e-6)
    frozen_mean = point.mean.clone()
    point.track = False
    point(torch.randn(50, 3) + 10.0)
    assert torch.equal(point.mean, frozen_mean)
    SharedModuleTransfer("drr").add_adapters(type("M", (), {"input_points": lambda self: {"p": point}})())
    point.beta, point.lam = 1.0, 0.0
    out = point(batches[0])
    assert torch.equal(out, batches[0]) and point.penalty > 0  # identity, but the batch is not N(mean, var) exactly
    floor = 1e-4  # KL(N(batch) || N(source)) per dimension, averaged over dimensions
    batch = Normal(batches[0].mean(0), (batches[0].var(0, unbiased=False) + floor).sqrt())
    source = Normal(point.mean, (point.var + floor).sqrt())
    assert point.penalty.item() == pytest.approx(kl_divergence(batch, source).mean().item(), rel=1e-5)
    point(torch.randn(50, 3) * 5.0)
    far = point.penalty.item()
    point(batches[1])
    assert far > 10 * point.penalty.item()  # further from the source statistics: a larger KL


def test_context_vocabularies_align_by_token_unseen_tokens_zero_disjoint_ones_refused(planted, tmp_path):
    keys, pretrained = planted
    write_planted_context(str(tmp_path), "wider", n_users=60, per_user=5, moods=6, seed=4)  # m4, m5: new
    data = prepare_domain(domain_config("MMTNet", "wider", None, {**keys, "data_path": str(tmp_path)}))
    model = build_model(data)
    target_tokens = id_tokens(data.dataset)
    SharedModuleTransfer("drr").apply(model, pretrained, data)
    table, source = model.context.tables["mood"].weight, pretrained.state_dict["context.tables.mood.weight"]
    for tid, token in enumerate(target_tokens["mood"][1:], start=1):
        if token in ("m4", "m5"):
            assert not table[tid].any()
        else:
            assert torch.equal(table[tid], source[pretrained.id_tokens["mood"].index(token)])
    renamed = {**target_tokens, "mood": ["[PAD]"] + [f"x{t}" for t in target_tokens["mood"][1:]]}
    renamed_target = type("Target", (), {"id_tokens": lambda self: renamed})()  # a target domain: its id_tokens()
    with pytest.raises(TransferDataError, match="context field 'mood'.*share nothing"):
        SharedModuleTransfer("drr").check(build_model(data), pretrained, renamed_target)


def test_a_drr_checkpoint_reloads_with_its_adapters_and_the_same_metrics(planted):
    result = transfer(planted, "drr", epochs=3)
    config, model, _dataset, _train, _valid, test = load_transfer_model(result["model_file"])
    assert any(".adapter." in name for name, _ in model.named_parameters())
    reloaded = TransferTrainer(config, model, stage="analysis").evaluate(test, load_best_model=False)
    assert dict(reloaded) == dict(result["test_result"])


@pytest.mark.parametrize("model, overrides, message", [
    ("MMTNet", {"transfer": "dr"}, "unknown transfer for a shared-module model \\(did you mean 'drr'\\?\\)"),
    ("MMTNet", {"transfer": "config-3"}, "a transfer of method 'layer_transfer'; use --model=TransferMLP"),
    ("MMTNet", {"transfer": "anneel"}, "allowed: none \\(scratch\\), frozen, anneal, drr, random"),
    ("TransferMLP", {"transfer": "drr"}, "transfer='drr': a transfer of method 'mmtnet'.*--model=MMTNet"),
    ("MMTNet", {"transfer": "anneal", "anneal_decay": 1.5}, "anneal_decay=1.5: must be a number in \\[0, 1\\]"),
    ("MMTNet", {"transfer": "drr", "adapter_width": 0}, "adapter_width=0: must be an integer >= 1"),
    ("MMTNet", {"transfer": "drr", "drr_beta": -1.0}, "drr_beta=-1.0: must be a number >= 0"),
    ("MMTNet", {"transfer": "drr", "target_embedding_init": "zero"}, "target_embedding_init=.zero.: must be one of source_mean, random"),
])
def test_bad_transfer_configs_raise_named_errors(model, overrides, message):
    with pytest.raises(TransferConfigError, match=message):  # a key's range: its config; an arm: the strategy
        method_of(model).make_strategy(TransferConfig(model, "ml-100k", None, overrides))


# ----- one command, many targets; Ray Tune ----------------------------------------------------------------

CLI_KEYS = ["--model=MMTNet", "--source=src", "--context_fields=[mood,slot]", "--epochs=3", "--seed=3",
            "--load_col={'inter': ['user_id', 'item_id', 'timestamp', 'mood', 'slot']}"]


@pytest.mark.slow
def test_one_command_trains_every_target_and_prints_per_target_macro_and_wall_time(planted, tmp_path, run_cli):
    keys, _pretrained = planted
    write_planted_context(keys["data_path"], "tgt2", n_users=100, per_user=5, seed=5)
    code, out, err = run_cli(["--scenario", "--targets=[tgt,tgt2]", "--arms=[none,drr,random]",
                              f"--data_path={keys['data_path']}", "--output=out", *CLI_KEYS], cwd=tmp_path)
    assert code == 0, err[-2000:]
    assert out.count("] seed 3 target tgt") == 6  # one progress line per (target, arm)
    for row in ("macro", "tgt", "tgt2", "scratch", "drr", "random"):  # per target, macro; per arm
        assert re.search(rf"^\|\s+{row} \|", out, re.M), row
    for text in ("wall s, all targets", "x scratch", "epochs to best"):
        assert text in out, text
    rows = json.loads((tmp_path / "out.json").read_text())
    assert sorted((r["target"], r["arm"]) for r in rows) == sorted(
        (t, a) for t in ("tgt", "tgt2") for a in ("none", "drr", "random"))
    # The frozen-random modules are a control: never the best transfer arm of a best-vs-best table.
    assert {r["arm"]: r["kind"] for r in rows} == {"none": "baseline", "drr": "transfer", "random": "control"}
    boosted = [{**r, f"valid_{r['metric']}": 1.0} if r["arm"] == "random" else r for r in rows]
    assert {r["picked"] for r in best_by_kind(boosted)} == {"none", "drr"}
    code, _out, err = run_cli(["--scenario", "--targets=[tgt]", "--arms=[none,dr]", f"--data_path={keys['data_path']}",
                               *CLI_KEYS], cwd=tmp_path)
    assert code == 2 and "did you mean 'drr'" in err


@pytest.mark.ray
@pytest.mark.slow
def test_ray_tune_searches_the_strategy_and_its_keys_per_target(planted, tmp_path, run_cli):
    keys, _pretrained = planted
    (tmp_path / "space.yaml").write_text(
        "scheduler: {type: fifo}\nbranches:\n  scratch: {transfer: none}\n"
        "  drr: {transfer: drr, drr_beta: {type: grid, values: [0.0, 0.1]}}\n")
    code, _out, err = run_cli(["--tune", "--search_space=space.yaml", "--run_dir=run", "--target=tgt", "--num_cpus=2",
                               f"--data_path={keys['data_path']}", *CLI_KEYS], cwd=tmp_path)
    assert code == 0, err[-3000:]
    result = json.loads((tmp_path / "run" / "tgt" / "result.json").read_text())
    trials = sorted((r["config"].get("transfer"), r["config"].get("drr_beta", -1)) for r in result["rows"])
    assert trials == [("drr", 0.0), ("drr", 0.1), ("none", -1)]
    assert all(r["ended"] == "finished" for r in result["rows"])
    assert (tmp_path / "run" / "tgt" / "best.yaml").is_file()
    bundled = SearchSpace.from_file(method=get_method("mmtnet")).trials(0, "none")  # --tune without a space file
    assert sorted({t["transfer"] for t in bundled}) == ["anneal", "drr", "none"] and len(bundled) == 5
