"""The evaluation protocol: one split and one set of candidates per (domain content, data_seed), shared by every
arm, trial and evaluation; thinning of training interactions only; the cache as a pure speed-up."""

import re

import numpy as np
import pytest
import torch

from recbole_transfer import pretrain_source, run_transfer
from recbole_transfer.methods.layer_transfer.importance import layer_importance
from recbole_transfer.pipeline.scenario import run_scenario
from recbole_transfer.pipeline.two_stage import load_transfer_model, prepare_domain
from recbole_transfer.request import domain_config
from recbole_transfer.registry import get_method
from recbole_transfer.trainer import TransferTrainer


def eval_batches(data):
    """(users, items) of every validation and test batch, in order: what the evaluator scores."""
    uid, iid = data.dataset.uid_field, data.dataset.iid_field
    out = []
    for loader in (data.valid_data, data.test_data):
        for interaction, *_ in loader:
            out.append((interaction[uid].numpy().copy(), interaction[iid].numpy().copy()))
    return out


def same_batches(a, b):
    return len(a) == len(b) and all(np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) for x, y in zip(a, b))


@pytest.mark.slow
def test_every_arm_shares_the_data_of_its_seed_and_data_seeds_differ(small_domains):
    rows = run_scenario("TransferMLP", "src", ["tgt"], None, small_domains, arms=["none", "config-1", "config-6"],
                        seeds=[1, 2])
    for seed in (1, 2):
        prints = {r["fingerprint"] for r in rows if r["seed"] == seed}
        assert len(prints) == 1  # every arm: the same train / valid / test and candidates
    assert len({r["fingerprint"] for r in rows}) == 2  # two data seeds: two splits
    for row in rows:  # per-user values are RecBole's metric, user by user
        assert np.mean(row["test_per_user"]["hit@10"]) == pytest.approx(row["test_hit@10"], abs=5e-5)
        assert len(row["test_per_user"]["ndcg@10"]) == len(row["valid_per_user"]["ndcg@10"]) > 0
    # a fixed data_seed: the training seed varies, the data does not
    fixed = run_scenario("TransferMLP", "src", ["tgt"], None, {**small_domains, "data_seed": 11}, arms=["none"], seeds=[1, 2])
    assert fixed[0]["fingerprint"] == fixed[1]["fingerprint"] and fixed[0]["data_seed"] == fixed[1]["data_seed"] == 11
    assert fixed[0]["valid_curve"] != fixed[1]["valid_curve"]  # trained differently


def test_a_model_evaluated_twice_and_layer_importance_run_twice_give_identical_results(small_domains):
    result = run_transfer("TransferMLP", None, "tgt", None, {**small_domains, "epochs": 2}, verbose=False)
    config, model, _, _, valid, test = load_transfer_model(result["model_file"])
    trainer = TransferTrainer(config, model, stage="analysis")
    first = dict(trainer.evaluate(valid, load_best_model=False))
    assert [dict(trainer.evaluate(valid, load_best_model=False)) for _ in range(3)] == [first] * 3
    assert dict(trainer.evaluate(test, load_best_model=False)) == dict(result["test_result"])  # reload: same test
    base_a, rows_a = layer_importance(config, model, valid)
    base_b, rows_b = layer_importance(config, model, valid)
    assert base_a == base_b and rows_a == rows_b


def test_a_checkpoint_is_refused_on_data_other_than_its_own(small_domains, run_cli, workdir):
    """A checkpoint stores the fingerprint of what it trained and validated on; a reload that rebuilds other data
    (another data_seed, or another protocol: a checkpoint written before the split changed) is refused, in Python
    and by --evaluate, instead of testing it on rows it may have trained on."""
    import torch

    from recbole_transfer.errors import TransferCheckpointError

    result = run_transfer("TransferMLP", None, "tgt", None, {**small_domains, "epochs": 1}, verbose=False)
    load_transfer_model(result["model_file"])  # its own data: fine
    with pytest.raises(TransferCheckpointError, match="was trained and validated on data"):
        load_transfer_model(result["model_file"], {"data_seed": 99})
    checkpoint = torch.load(result["model_file"], weights_only=True)
    older = workdir / "older.pth"
    torch.save({**checkpoint, "fingerprint": "0" * 16}, older)  # as if another protocol had built its data
    code, _out, err = run_cli([f"--evaluate={older}"])
    assert code == 2 and "was trained and validated on data 0000000000000000" in err and "Traceback" not in err


def test_thinning_keeps_valid_test_and_candidates_and_nests_the_training_rows(workdir):
    keys = {"domain_cache_dir": "cache", "data_seed": 3}
    scenario = get_method("layer_transfer").scenario  # the ml-100k genre domains

    seen = {}
    for fraction in (1.0, 0.5, 0.2, 0.1):
        data = prepare_domain(domain_config("TransferMLP", "action", [scenario], {**keys, "keep_fraction": fraction}))
        seen[fraction] = (data.protocol.rows, eval_batches(data))
    rows_full, batches_full = seen[1.0]
    for fraction in (0.5, 0.2, 0.1):
        rows, batches = seen[fraction]
        assert np.array_equal(rows["valid"], rows_full["valid"]) and np.array_equal(rows["test"], rows_full["test"])
        assert same_batches(batches, batches_full)  # the same users, positives and 99 negatives
        assert np.array_equal(rows["train_full"], rows_full["train"])
    sizes = [len(seen[f][0]["train"]) for f in (1.0, 0.5, 0.2, 0.1)]
    assert sizes == sorted(sizes, reverse=True) and sizes[1] < 0.6 * sizes[0]
    assert set(seen[0.1][0]["train"]) <= set(seen[0.2][0]["train"]) <= set(seen[0.5][0]["train"])  # nested


def test_thinning_is_keyed_by_content_and_data_seed_not_by_the_domain_name(workdir):
    rule = {"base": "ml-100k", "items": {"field": "class", "values": ["Action"], "match": "first"},
            "user_split": {"parts": 2, "keep": [1]}, "prefix_ids": True, "keep_fraction": 0.2}
    keys = {"domain_cache_dir": "cache", "domains": {"act_a": rule, "act_b": rule}}
    a = prepare_domain(domain_config("TransferMLP", "act_a", None, {**keys, "data_seed": 1}))
    b = prepare_domain(domain_config("TransferMLP", "act_b", None, {**keys, "data_seed": 1}))
    c = prepare_domain(domain_config("TransferMLP", "act_a", None, {**keys, "data_seed": 2}))
    assert a.dataset.field2id_token["item_id"][1] != b.dataset.field2id_token["item_id"][1]  # other names, other tokens
    for part in ("train", "valid", "test"):
        assert np.array_equal(a.protocol.rows[part], b.protocol.rows[part])
        assert not np.array_equal(a.protocol.rows[part], c.protocol.rows[part])
    assert same_batches(eval_batches(a), eval_batches(b))


RANDOM_SPLIT = {"split": {"RS": [0.5, 0.25, 0.25]}, "group_by": "user", "order": "RO", "mode": "uni99"}


@pytest.mark.parametrize("eval_args", [None, RANDOM_SPLIT], ids=["leave-one-out", "several-positives-per-user"])
def test_cached_and_uncached_protocols_give_identical_metrics(small_domains, workdir, eval_args):
    keys = {**small_domains, "epochs": 3, "transfer": "none", **({"eval_args": eval_args} if eval_args else {})}
    cached = run_transfer("TransferMLP", None, "src", None, keys, verbose=False)
    assert list((workdir / "saved" / "protocols").glob("*.npz"))  # written once ...
    again = run_transfer("TransferMLP", None, "src", None, keys, verbose=False)  # ... read back
    uncached = run_transfer("TransferMLP", None, "src", None, {**keys, "protocol_cache": False}, verbose=False)
    for other in (again, uncached):
        assert dict(other["test_result"]) == dict(cached["test_result"])
        assert dict(other["best_valid_result"]) == dict(cached["best_valid_result"])
        assert other["test_per_user"] == cached["test_per_user"] and other["valid_curve"][0][2] == cached["valid_curve"][0][2]
        assert other["fingerprint"] == cached["fingerprint"]


def test_recbole_trainer_on_the_protocol_gives_the_pipeline_metrics(small_domains):
    """The plugin changes the data protocol, not training: RecBole's own Trainer on the same dataloaders
    gives exactly our pipeline's metrics for no transfer."""
    from recbole.trainer import Trainer

    from recbole_transfer.pipeline.two_stage import build_model

    keys = {**small_domains, "transfer": "none"}
    ours = run_transfer("NeuMF", None, "tgt", None, keys, saved=False, verbose=False)
    data = prepare_domain(domain_config("NeuMF", "tgt", None, keys))
    trainer = Trainer(data.config, build_model(data))
    best_valid = trainer.fit(data.train_data, data.valid_data, saved=False, verbose=False)[1]
    assert dict(best_valid) == dict(ours["best_valid_result"])
    assert dict(trainer.evaluate(data.test_data, load_best_model=False)) == dict(ours["test_result"])


def test_source_and_target_protocols_follow_data_seed(small_domains):
    src_a = pretrain_source("TransferMLP", "src", None, {**small_domains, "epochs": 1, "data_seed": 4, "seed": 1}, verbose=False)
    src_b = pretrain_source("TransferMLP", "src", None, {**small_domains, "epochs": 1, "data_seed": 4, "seed": 2}, verbose=False)
    from recbole_transfer.trainer import load_checkpoint

    prints = [load_checkpoint(s.model_file)["fingerprint"] for s in (src_a, src_b)]
    assert prints[0] == prints[1]  # the source stage too: same data_seed, same data, whatever the training seed
    config = domain_config("TransferMLP", "tgt", None, {**small_domains, "seed": 9})
    assert config["data_seed"] is None and prepare_domain(config).protocol.meta["args"]["data_seed"] == 9  # default: seed


def test_paired_intervals_count_each_user_once_across_seeds(small_domains):
    """With a fixed data_seed every seed tests the same users: the interval must not count them twice."""
    from recbole_transfer.report import paired_vs

    rows = run_scenario("TransferMLP", "src", ["tgt"], None, {**small_domains, "data_seed": 3}, arms=["none", "config-6"],
                        seeds=[1, 2])
    users = rows[0]["test_users"]
    assert rows[2]["test_users"] == users and len(set(users)) == len(users)
    both = paired_vs(rows, "config-6", "none", "test_hit@10")
    per_seed = [np.subtract(rows[i + 1]["test_per_user"]["hit@10"], rows[i]["test_per_user"]["hit@10"]) for i in (0, 2)]
    assert both.n == len(users)  # users, not (seed, user) rows
    assert both.mean == pytest.approx(np.mean((per_seed[0] + per_seed[1]) / 2))


def test_fixed_rng_leaves_the_callers_random_streams_where_they_were():
    import random

    import torch

    from recbole_transfer.utils import fixed_rng

    def draw():
        return random.random(), float(np.random.rand()), float(torch.rand(1))

    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    expected = draw()
    random.seed(1), np.random.seed(1), torch.manual_seed(1)
    with fixed_rng(5):
        inside = draw()
    assert draw() == expected and inside != expected
    with fixed_rng(5):
        assert draw() == inside  # the block's own draws are fixed


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA device")
def test_fixed_rng_leaves_the_cuda_streams_where_they_were():
    import torch

    from recbole_transfer.utils import fixed_rng

    torch.cuda.manual_seed_all(1)
    expected = torch.rand(3, device="cuda")
    torch.cuda.manual_seed_all(1)
    with fixed_rng(5):
        torch.rand(3, device="cuda")
    assert torch.equal(torch.rand(3, device="cuda"), expected)


# ----- the protocol cache cannot go stale --------------------------------------------------------------------
CODE_ENTRIES = ("code", "recbole_transfer", "recbole", "numpy", "torch")


def _cached(folder):
    return sorted(p.name for p in folder.glob("*.npz"))


def _domain(keys, **extra):
    from recbole_transfer.pipeline import domain_config, prepare_domain

    return prepare_domain(domain_config("BPR", "src", None, {**keys, **extra}))


def test_the_code_key_holds_the_drawing_code_and_the_versions_that_draw_a_protocol():
    import hashlib

    import recbole
    import torch

    import recbole_transfer
    from recbole_transfer import utils
    from recbole_transfer.data import candidates, protocol as protocol_module, split

    code = hashlib.sha1()  # the code that draws a protocol: its split, its candidates, the protocol, the seeding
    for module in (protocol_module, split, candidates, utils):
        with open(module.__file__, "rb") as f:
            code.update(f.read())
    source = code.hexdigest()
    expected = {"code": source, "recbole_transfer": recbole_transfer.__version__, "recbole": recbole.__version__,
                "numpy": np.__version__, "torch": torch.__version__}
    assert {k: protocol_module.CODE_KEY.get(k) for k in CODE_ENTRIES} == expected


def test_a_protocol_is_rebuilt_when_its_code_libraries_or_training_negatives_change(small_domains, workdir, monkeypatch):
    """Each entry of CODE_KEY, and the training sampler's alpha when evaluation samples by popularity (RecBole 1.2.1
    draws those candidates with it), is part of the protocol key: changing one gives another key and a new cache file
    (the cached one is not read); the same keys again read the cached file back. Training negatives that change no
    candidate (uniform evaluation) keep the protocol, so trials that differ only in them are scored alike."""
    from recbole_transfer.data import protocol as protocol_module

    folder = workdir / "p"
    keys = {**small_domains, "protocol_dir": str(folder), "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1}}
    first = _domain(keys).protocol
    assert len(_cached(folder)) == 1
    again = _domain(keys).protocol
    assert again.key == first.key and len(_cached(folder)) == 1  # read back, nothing rebuilt
    assert all(np.array_equal(again.rows[p], first.rows[p]) for p in ("train", "valid", "test"))
    seen = {first.key}
    for entry in CODE_ENTRIES:
        with monkeypatch.context() as patch:
            patch.setattr(protocol_module, "CODE_KEY", {**protocol_module.CODE_KEY, entry: "changed"})
            key = _domain(keys).protocol.key
        assert key not in seen, entry  # another key ...
        seen.add(key)
        assert len(_cached(folder)) == len(seen), entry  # ... and its own file: the cached one was not reused
    for negatives in ({"distribution": "uniform", "sample_num": 2}, {"distribution": "popularity", "sample_num": 1}):
        assert _domain({**keys, "train_neg_sample_args": negatives}).protocol.key == first.key, negatives  # no candidate
    popular = {**keys, "eval_args": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "RO", "mode": "pop20"}}
    for alpha in (1.0, 0.5):
        key = _domain({**popular, "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1, "alpha": alpha}}).protocol.key
        assert key not in seen, alpha
        seen.add(key)
        assert len(_cached(folder)) == len(seen), alpha
    assert _domain(keys).protocol.key == first.key and len(_cached(folder)) == len(seen)  # the original: still cached


def test_an_edit_of_the_drawing_modules_rebuilds_the_cache_but_keeps_every_draw(small_domains, workdir, monkeypatch):
    """The draws are keyed by DRAW_CODE (the drawing code of protocol version 2), not by the live code: an edit of the
    protocol's modules that does not change how they draw gives a new cache key and the same split, candidates and
    fingerprint; a new DRAW_CODE (what a change of the draws must set, with the version) gives other candidates."""
    from recbole_transfer.data import protocol as protocol_module

    eval_args = {"split": {"RS": [0.6, 0.2, 0.2]}, "group_by": "user", "order": "RO", "mode": "uni50"}
    keys = {**small_domains, "eval_args": eval_args, "protocol_dir": str(workdir / "p"), "keep_fraction": 0.5}  # thinned
    first = _domain(keys)
    with monkeypatch.context() as patch:
        patch.setattr(protocol_module, "CODE_KEY", {**protocol_module.CODE_KEY, "code": "edited"})
        edited = _domain(keys)
    assert edited.protocol.key != first.protocol.key and len(_cached(workdir / "p")) == 2  # rebuilt, not read back
    assert all(np.array_equal(edited.protocol.rows[p], first.protocol.rows[p]) for p in ("train", "valid", "test"))
    assert edited.fingerprint() == first.fingerprint()  # the same thinning and candidates
    with monkeypatch.context() as patch:
        patch.setattr(protocol_module, "DRAW_KEY", {**protocol_module.DRAW_KEY, "code": "another draw"})
        redrawn = _domain(keys)
    assert redrawn.fingerprint() != first.fingerprint()
    assert not np.array_equal(redrawn.protocol.rows["train"], first.protocol.rows["train"])  # other rows thinned away


@pytest.mark.parametrize("mode", ["full", "uni50"])
def test_eval_batch_size_changes_neither_the_protocol_key_nor_the_fingerprint(small_domains, workdir, mode):
    """The same split and candidates evaluated in batches of 4096 or 300 rows: one protocol key, one cache file, one
    fingerprint, whether the candidates come from the cache, are recorded at either batch size or redrawn."""
    from recbole_transfer.data import Protocol

    eval_args = {"split": {"RS": [0.6, 0.2, 0.2]}, "group_by": "user", "order": "RO", "mode": mode}  # several positives
    keys = {**small_domains, "eval_args": eval_args, "protocol_dir": str(workdir / "p")}
    big = _domain(keys, eval_batch_size=4096)
    few = {"eval_batch_size": 300, "eval_memory_mb": 0.002}  # full ranking: 2 users per batch, not all of them
    small = _domain(keys, **few)  # reads big's cache
    fresh = _domain({**keys, "protocol_dir": str(workdir / "q")}, **few)  # records at 300
    uncached = _domain(keys, **few, protocol_cache=False)
    assert len(list(small.valid_data)) > 10 * len(list(big.valid_data))  # really other batches
    assert small.protocol.key == big.protocol.key == fresh.protocol.key and len(_cached(workdir / "p")) == 1
    prints = {name: data.fingerprint() for name, data in
              (("4096", big), ("300", small), ("300, recorded", fresh), ("300, uncached", uncached))}
    assert len(set(prints.values())) == 1, prints
    assert Protocol.fingerprint(small.train_data, small.valid_data, small.test_data) == \
        Protocol.fingerprint(big.train_data, big.valid_data, big.test_data) == prints["4096"]
    assert _domain(keys, eval_batch_size=300, data_seed=8).fingerprint() != prints["4096"]  # it does see the data


def test_full_ranking_packs_users_to_its_memory_budget_with_the_same_metrics(small_domains):
    """Full ranking scores as many users per batch as eval_memory_mb holds (here: all of them in one batch, where
    RecBole's eval_batch_size // items gives 31); two users per batch give the same metrics, per-user values and
    fingerprint (the collector joins the batches in order)."""
    eval_args = {"split": {"RS": [0.6, 0.2, 0.2]}, "group_by": "user", "order": "RO", "mode": "full"}
    keys = {**small_domains, "eval_args": eval_args, "transfer": "none", "epochs": 2}
    packed = _domain(keys)
    assert len(list(packed.test_data)) == 1
    assert len(list(_domain(keys, eval_memory_mb=0.002, eval_batch_size=300).test_data)) > 10
    runs = [run_transfer("BPR", None, "src", None, {**keys, **extra}, saved=False, verbose=False)
            for extra in ({}, {"eval_memory_mb": 0.002, "eval_batch_size": 300})]
    for key in ("test_result", "best_valid_result"):
        assert dict(runs[0][key]) == dict(runs[1][key])
    assert runs[0]["test_per_user"] == runs[1]["test_per_user"] and runs[0]["fingerprint"] == runs[1]["fingerprint"]
    assert runs[0]["test_users"] == runs[1]["test_users"]


def test_set_up_reports_each_phase_with_counts_and_seconds(small_domains, workdir, caplog):
    """Loading, the split (drawn, then read back from the cache), the dataloaders with their candidates and the
    fingerprint each log a line (pipeline.two_stage.load_dataset / domain_data, which the overlap family's pairs use
    too): a large domain is never silent while it is set up."""
    import logging

    caplog.set_level(logging.INFO, logger="recbole_transfer")
    keys = {**small_domains, "transfer": "none", "epochs": 1}
    for _ in range(2):
        run_transfer("BPR", None, "src", None, keys, saved=False, verbose=False)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("set-up src:")]
    phases = [line.split(": ", 1)[1].split(" ")[0] for line in lines]
    assert phases == ["loading", "loaded", "split", "dataloaders", "data"] * 2, lines
    assert re.search(r"loaded and filtered, \d+ interactions, 120 users, 130 items \(\d+\.\d s\)", lines[1]), lines[1]
    assert "drawn under data_seed 7" in lines[2] and "read from the protocol cache" in lines[7]
    assert all(re.search(r"\d+\.\d s\)?$", line) for line in lines if not line.endswith("..."))


def test_phases_without_progress_of_their_own_say_they_are_still_running(small_domains, monkeypatch, caplog):
    """RecBole's loading and filtering, the split, the dataloaders and candidates (RecBole's sampler draws them user by
    user), the model's build (EASE's build is its fit), a training epoch and an evaluation print nothing while they run: ``logs.heartbeat`` logs ``still running`` every ``EVERY_S`` seconds in each (here
    every 0.05 s, each phase held 0.3 s) and stops when the phase ends."""
    import logging
    import time

    from recbole.trainer import Trainer

    from recbole_transfer import logs
    from recbole_transfer.pipeline import two_stage

    def slow(call):
        def held(*args, **kwargs):
            time.sleep(0.3)
            return call(*args, **kwargs)
        return held

    monkeypatch.setattr(logs, "EVERY_S", 0.05)
    monkeypatch.setattr(two_stage, "create_dataset", slow(two_stage.create_dataset))
    monkeypatch.setattr(two_stage.Protocol, "of", staticmethod(slow(two_stage.Protocol.of)))
    monkeypatch.setattr(two_stage.Protocol, "dataloaders", slow(two_stage.Protocol.dataloaders))
    monkeypatch.setattr(two_stage, "get_model", lambda name, get=two_stage.get_model: slow(get(name)))
    monkeypatch.setattr(Trainer, "_train_epoch", slow(Trainer._train_epoch))
    monkeypatch.setattr(Trainer, "evaluate", slow(Trainer.evaluate))
    caplog.set_level(logging.INFO, logger="recbole_transfer")
    run_transfer("BPR", None, "src", None, {**small_domains, "transfer": "none", "epochs": 1}, saved=False, verbose=False)
    beats = [r.getMessage() for r in caplog.records if "still running" in r.getMessage()]
    for phase in ("set-up src: loading and filtering", "set-up src: split", "set-up src: dataloaders and evaluation "
                  "candidates", "set-up src: building BPR", "epoch 0 training", "evaluating"):
        assert any(re.fullmatch(re.escape(phase) + r": still running \(\d+ s\)", b) for b in beats), (phase, beats)
    time.sleep(0.2)
    assert len([r for r in caplog.records if "still running" in r.getMessage()]) == len(beats)  # every beat stopped


def test_batched_struct_joins_like_recboles_datastruct():
    """The evaluation collector's struct: the same tensors in the same order as RecBole's DataStruct, joined once;
    a name holding a non-tensor is refused at once, as RecBole refuses it."""
    import copy

    import torch
    from recbole.evaluator.collector import DataStruct

    from recbole_transfer.trainer.trainer import BatchedStruct

    ours, theirs = BatchedStruct(), DataStruct()
    for struct in (ours, theirs):
        for start in range(0, 9, 3):
            struct.update_tensor("rec.topk", torch.arange(start, start + 3).view(3, 1))
        struct.set("data.count", 9)
    assert torch.equal(copy.deepcopy(ours)["rec.topk"], theirs["rec.topk"]) and "rec.topk" in ours
    ours.update_tensor("rec.topk", torch.tensor([[9]]))
    assert ours.get("rec.topk").view(-1).tolist() == list(range(10)) and ours["rec.topk"].shape == (10, 1)
    with pytest.raises(ValueError, match="not a tensor"):
        ours.update_tensor("data.count", torch.tensor([1]))
    del ours["rec.topk"]
    with pytest.raises(IndexError):
        ours.get("rec.topk")


@pytest.mark.parametrize("domain, split", [("src", {"RS": [0.5, 0.25, 0.25]}), ("action", {"LS": "valid_and_test"})])
def test_stored_candidates_collate_from_arrays_into_recboles_batches(small_domains, domain, split):
    """A sampled evaluation replaying stored candidates builds each batch from arrays; RecBole's loader builds it user
    by user. Same fields, values, dtypes and batch extras (on a planted domain split at random, several positives per
    user, and on an ml-100k genre domain whose users and items carry features, leave-one-out)."""
    from recbole.data.dataloader import NegSampleEvalDataLoader

    from recbole_transfer.data.candidates import FixedCandidates

    scenario = [get_method("layer_transfer").scenario] if domain == "action" else None
    keys = {**small_domains, "domain_cache_dir": "cache", "data_seed": 4,
            "eval_args": {"split": split, "group_by": "user", "order": "RO", "mode": "uni99"}}
    prepare_domain(domain_config("TransferMLP", domain, scenario, keys))  # draws the candidates and stores them
    data = prepare_domain(domain_config("TransferMLP", domain, scenario, keys))  # replays them
    for loader in (data.valid_data, data.test_data):
        assert isinstance(loader._sampler, FixedCandidates) and loader._from_arrays
        users = np.arange(loader.sample_size)
        assert loader.uid2items_num.max() > 1 or domain == "action"
        for index in (users[:7], users[7:8], users[len(users) // 2:]):
            ours, theirs = loader.collate_fn(index), NegSampleEvalDataLoader.collate_fn(loader, index)
            assert sorted(ours[0].interaction) == sorted(theirs[0].interaction)
            for field, value in theirs[0].interaction.items():
                assert value.dtype == ours[0][field].dtype and torch.equal(value, ours[0][field]), field
            for a, b in zip(ours[1:], theirs[1:]):
                assert a.dtype == b.dtype and torch.equal(a, b)


def test_candidates_drawn_in_arrays_are_uniform_never_seen_and_keep_the_split(small_domains):
    """``candidate_draw: arrays``: the split is RecBole's draw's; every candidate is an item the user has no
    interaction with up to that phase (training rows, valid, and test for the test phase), each such item equally
    likely; the same data seed draws the same, with or without the cache; popularity candidates are refused."""
    from recbole_transfer.data.protocol import draw_candidates
    from recbole_transfer.errors import TransferConfigError

    keys = {**small_domains, "data_seed": 5, "eval_args": {"split": {"RS": [0.5, 0.25, 0.25]}, "group_by": "user",
                                                          "order": "RO", "mode": "uni99"}}
    recbole = prepare_domain(domain_config("BPR", "src", None, keys))
    arrays = prepare_domain(domain_config("BPR", "src", None, {**keys, "candidate_draw": "arrays"}))
    uncached = prepare_domain(domain_config("BPR", "src", None, {**keys, "candidate_draw": "arrays",
                                                                    "protocol_cache": False}))
    for part in ("train", "valid", "test"):
        assert np.array_equal(recbole.protocol.rows[part], arrays.protocol.rows[part])
    assert same_batches(eval_batches(arrays), eval_batches(uncached))
    assert not same_batches(eval_batches(arrays), eval_batches(recbole))  # other draws of the same distribution
    dataset, rows = arrays.dataset, arrays.protocol.rows
    feat = dataset.inter_feat
    n_items = dataset.item_num
    for phase, upto in (("valid", ("train_full", "valid")), ("test", ("train_full", "valid", "test"))):
        stored_keys, negatives = arrays.protocol.candidates[phase]
        seen = {(int(u), int(i)) for part in upto for u, i in zip(feat[dataset.uid_field][rows[part]].tolist(),
                                                                  feat[dataset.iid_field][rows[part]].tolist())}
        assert negatives.shape == (len(rows[phase]), 99) and negatives.min() >= 1 and negatives.max() < n_items
        assert not any((int(u), int(i)) in seen for (u, _p, _o), row in zip(stored_keys, negatives) for i in row)
    # uniform: many draws for one positive whose user has seen only that item: every other item equally likely
    phase_data = arrays.valid_data._dataset
    one = phase_data.copy(phase_data.inter_feat[torch.arange(1)])
    positive = int(one.inter_feat[dataset.iid_field][0])
    draws = np.concatenate([draw_candidates(one, [one], {"distribution": "uniform", "sample_num": 2000},
                                            f"{s + 1:016x}")[1].ravel() for s in range(20)])
    counts = np.bincount(draws, minlength=n_items)
    assert counts[0] == 0 and counts[positive] == 0
    allowed = np.delete(counts, [0, positive])
    expected = len(draws) / len(allowed)
    chi2 = (((allowed - expected) ** 2) / expected).sum()
    assert chi2 < len(allowed) + 5 * np.sqrt(2 * len(allowed))  # chi-square, len(allowed) - 1 degrees of freedom
    with pytest.raises(TransferConfigError, match="candidate_draw: arrays draws uniform candidates only"):
        prepare_domain(domain_config("BPR", "src", None, {**keys, "candidate_draw": "arrays", "data_seed": 6,
                                                          "eval_args": {"mode": "pop99"}}))


def test_long_collation_prints_progress_lines(small_domains, monkeypatch, caplog):
    """A set-up phase that runs long says how far it is: ``logs.progress`` logs ``done / total`` every ``every``
    seconds (here every batch), never the last (the phase's own line follows), and passes the items through."""
    import logging

    from recbole_transfer import logs
    from recbole_transfer.data import candidates

    assert list(logs.progress(iter("abc"), 3, "x", logging.getLogger("t"), every=0.0)) == ["a", "b", "c"]
    monkeypatch.setattr(candidates, "progress", lambda it, total, what, log: logs.progress(it, total, what, log, 0.0))
    with caplog.at_level(logging.INFO, logger="recbole_transfer.data.candidates"):
        prepare_domain(domain_config("BPR", "src", None, {**small_domains, "data_seed": 8, "eval_batch_size": 500}))
    lines = [r.getMessage() for r in caplog.records if "collating the valid batches" in r.getMessage()]
    assert lines and lines[0].startswith("src: collating the valid batches: 1 / ")
    total = int(lines[0].split(" / ")[1].split()[0])
    assert total > 1 and len(lines) == total - 1


def test_a_watched_command_is_never_silent_between_phases_either(monkeypatch, caplog):
    """``logs.watch`` (around every CLI command): when nothing has been written for ``EVERY_S`` seconds it logs the
    innermost phase's ``still running``, or, outside any phase (code between two phases), ``still running (N s since
    the last line)``; a heartbeat inside it starts no thread of its own (one line per silence), and the streams
    are given back at the end."""
    import logging
    import sys
    import threading
    import time

    from recbole_transfer import logs

    monkeypatch.setattr(logs, "EVERY_S", 0.2)
    logger = logging.getLogger("recbole_transfer.test_watch")
    caplog.set_level(logging.INFO, logger="recbole_transfer")
    stdout = sys.stdout
    with logs.watch(logger):
        assert sys.stdout is not stdout
        time.sleep(0.5)  # between phases
        between = [r.getMessage() for r in caplog.records if "since the last line" in r.getMessage()]
        with logs.heartbeat("phase one", logger):
            assert not any(t.name == "heartbeat" for t in threading.enumerate())
            time.sleep(0.5)
        print("a line")  # written: the silence starts again
    assert sys.stdout is stdout
    assert between and re.fullmatch(r"still running \(\d+ s since the last line\)", between[0]), between
    beats = [r.getMessage() for r in caplog.records if r.getMessage().startswith("phase one: still running")]
    assert 1 <= len(beats) <= 3, beats
    count = len(caplog.records)
    time.sleep(0.3)
    assert len(caplog.records) == count  # the watchdog stopped with the command
