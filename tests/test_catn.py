"""CATN and the pair's documents, on planted-aspect review domains (recbole_transfer.data.synthetic)."""

import logging

import pytest
import torch

from recbole_transfer import registry
from recbole_transfer.data.synthetic import write_planted_aspects
from recbole_transfer.errors import TransferDataError
from recbole_transfer.methods.overlap_cdr.runner import build, pair_configs, pair_request, run_one
from recbole_transfer.request import Request
from recbole_transfer.methods.overlap_cdr.documents import build_documents
from recbole_transfer.methods.overlap_cdr.pair import build_pair
from recbole_transfer.methods.overlap_cdr.stages import forever

KEYS = {"protocol": "cold_start", "task": "rating", "word_dim": 16, "aspect_dim": 8, "aspects": 3, "conv_filters": 12,
        "max_doc_len": 120, "train_batch_size": 128, "learning_rate": 0.003, "show_progress": False,
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "labeled"}}


@pytest.fixture(scope="module")
def aspects(tmp_path_factory):
    root = tmp_path_factory.mktemp("aspects")
    write_planted_aspects(str(root / "data"), n_users=80, n_items=(30, 30), per_user=(6, 4), seed=3)
    keys = {**KEYS, "data_path": str(root / "data"), "protocol_dir": str(root / "protocols"),
            "checkpoint_dir": str(root / "saved")}
    source_config, config = pairs("CATN", "asrc", "atgt", [registry.get_method("overlap_cdr").scenario], keys)
    pair = build_pair(source_config, config)
    return {"pair": pair, "config": config, "root": root}


def _model(aspects):
    torch.manual_seed(0)
    model = build("CATN", aspects["config"], aspects["pair"])
    model.eval()
    return model


def _cold_users(pair, n=4):
    return torch.as_tensor([pair.target.dataset.token2id("user_id", t) for t in pair.split.cold_test[:n]])


def pairs(model, source, target, files, keys):
    """(source config, target config) of ``model`` on a pair, as the family's runner builds them."""
    return pair_configs(pair_request(Request(model, source, [target], files if isinstance(files, list) else [files], keys)))


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


def test_auxiliary_reviews_follow_the_paper_or_the_released_code():
    import numpy as np

    from recbole_transfer.methods.overlap_cdr.documents import _auxiliary

    # rows: user, item, rating; user 3 is in both domains; texts are one token per row (its row number + 1)
    users, items = np.array([1, 2, 1, 3, 2, 4]), np.array([7, 7, 8, 7, 8, 8])
    label = np.array([5.0, 5.0, 3.0, 5.0, 4.0, 3.0])
    texts = [np.array([r + 1]) for r in range(6)]
    rows, in_both = np.arange(6), np.array([False, False, False, True, False, False])
    paper = _auxiliary(rows, users, items, label, texts, False, in_both, None)
    # another user's review of the same item with the same rating, the first in row order; none if there is none
    assert {u: [int(t[0]) for t in v] for u, v in paper.items()} == {1: [2, 6], 2: [1], 3: [1], 4: [3]}
    drawn = [_auxiliary(rows, users, items, label, texts, True, in_both, np.random.default_rng(s)) for s in range(20)]
    for aux in drawn:
        assert 3 not in aux  # a user in both domains gets none ...
        picked = {u: [int(t[0]) for t in v] for u, v in aux.items()}
        assert picked[1][0] in (1, 2) and picked[1][1] in (3, 6) and picked[4][0] in (3, 6)
        assert picked[2][0] in (1, 2) and picked[2][1] == 5  # her own review when it is the only one
        assert 4 not in picked[1] + picked[2]  # ... and lends none (user 3's review, row 3, is never drawn)
    assert {int(d[1][0][0]) for d in drawn} == {1, 2}  # random, her own review included


def test_code_faithful_aux_leaves_users_in_both_domains_without_auxiliary_documents(aspects, caplog):
    pair = aspects["pair"]
    paper = build_documents(pair, "review", 120)
    code = build_documents(pair, "review", 120, code_faithful_aux=True)
    assert int(paper.aux_docs["source"].count_nonzero()) > 0
    for domain in ("source", "target"):  # every planted user is in both domains
        assert int(code.aux_docs[domain].count_nonzero()) == 0
        assert torch.equal(code.user_docs[domain], paper.user_docs[domain])


def test_catn_scenario_runs_the_rating_baselines_and_catn_at_the_papers_etas(aspects):
    from recbole_transfer.methods.overlap_cdr.runner import PairRunner
    from recbole_transfer.request import Request

    method = registry.get_method("overlap_cdr")
    request = Request("CATN", "asrc", ["atgt"], [method.runner.scenario_files(method, "CATN")[0]], {"data_path": str(aspects["root"] / "data")})
    arms = PairRunner().arms(method, request)
    assert arms[-1] == "CATN" and {"item_mean_offset", "CMF", "EMCDR", "item_mean", "global_mean"} <= set(arms)
    _source, config = pair_configs(pair_request(request))
    assert config["protocol"] == "cold_start" and list(config["scenario_etas"]) == [1.0, 0.5, 0.2, 0.1, 0.05]
    assert list(config["scenario_protocols"]) == ["cold_start"]
    cmf = Request("CMF", "asrc", ["atgt"], [method.scenario], {"task": "rating", "data_path": str(aspects["root"] / "data")})
    assert "CATN" not in PairRunner().arms(method, cmf)  # a CMF scenario reads no documents


EASY = {"n_users": 300, "n_items": (60, 60), "per_user": (10, 8), "n_aspects": 3, "noise": 0.1, "strength": 2.0}
EASY_KEYS = {**KEYS, "word_dim": 16, "max_doc_len": 100, "conv_filters": 32, "aspects": 3, "aspect_dim": 16,
             "dropout_prob": 0.0, "train_batch_size": 64, "epochs": 12, "stopping_step": 4, "eta": 1.0}


@pytest.mark.slow
def test_catn_transfers_planted_aspects_and_a_shuffled_source_removes_the_gain(tmp_path):
    """Planted aspects (strong signal, 300 users), one data seed (one seed, one result; the CATN benchmark measures
    seeds): on cold users CATN beats the item mean and the item mean plus the source offset by > 0.1 RMSE; when every
    source review belongs to a random other user, CATN keeps less than half of that gain."""
    scenario = [registry.get_method("overlap_cdr").scenario]
    for seed in (1,):
        gain = {}
        for shuffled in (False, True):
            folder = tmp_path / f"seed{seed}-{'shuffled' if shuffled else 'planted'}"
            write_planted_aspects(str(folder / "data"), seed=seed, shuffle_source=shuffled, **EASY)
            keys = {**EASY_KEYS, "seed": seed, "data_path": str(folder / "data"), "protocol_dir": str(folder / "p"),
                    "checkpoint_dir": str(folder / "saved")}
            pair = build_pair(*pairs("CATN", "asrc", "atgt", scenario, keys))
            rmse = {}
            for arm, extra in (("item", {"rating_mean": "item"}), ("item_offset", {"rating_mean": "item_offset"})):
                rmse[arm] = run_one("RatingMean", pair, pairs("RatingMean", "asrc", "atgt", scenario,
                                                              {**keys, **extra})[1])[0]["test_rmse"]
            rmse["CATN"] = run_one("CATN", pair, pairs("CATN", "asrc", "atgt", scenario, keys)[1])[0]["test_rmse"]
            gain[shuffled] = min(rmse["item"], rmse["item_offset"]) - rmse["CATN"]
        assert gain[False] > 0.1, (seed, gain)
        assert gain[True] < gain[False] / 2, (seed, gain)


def test_a_runs_batch_size_reaches_the_pairs_loaders_and_model_keys_stay_with_their_model(aspects):
    """The pair's training loaders were built with one config's batch size; every run trains with its own (e.g.
    CATN's model_keys batch beside the other arms' in one scenario)."""
    pair = aspects["pair"]
    for size in (32, 96):
        pair.reset(0, size)
        assert len(next(iter(pair.target.train_data))) == size and len(next(iter(pair.source.train_data))) == size
    method = registry.get_method("overlap_cdr")
    files = [method.runner.scenario_files(method, "CATN")[0]]
    catn = pairs("CATN", None, "kg_tgt", files, {})[1]
    cmf = pairs("CMF", None, "kg_tgt", files, {})[1]
    assert (catn["train_batch_size"], catn["learning_rate"], catn["stopping_step"]) == (4096, 0.003, 4)
    assert (cmf["train_batch_size"], cmf["learning_rate"], cmf["stopping_step"]) == (2048, 0.001, 10)
    assert pairs("CATN", None, "kg_tgt", files, {"train_batch_size": 512})[1]["train_batch_size"] == 512
    from recbole_transfer.errors import TransferConfigError

    for bad, message in (([1, 2], "must be a mapping"), ({"CATN": 5}, "must be a mapping"),
                         ({"NoSuchModel": {"epochs": 1}}, "unknown model 'NoSuchModel'")):
        with pytest.raises(TransferConfigError, match=message):
            pairs("CATN", None, "kg_tgt", files, {"model_keys": bad})


def test_a_doc_field_that_is_not_text_is_refused(aspects):
    with pytest.raises(TransferDataError, match="doc_field='rating'.*not as a token_seq"):
        build_documents(aspects["pair"], "rating", 50)


def _fixed_batches(pair):
    target = next(iter(pair.target.train_data))
    source = next(iter(pair.source.train_data))
    return target, source


def test_in_domain_flows_add_each_domains_own_reading_to_the_papers_two_flows(aspects):
    """With ``in_domain_weight`` the loss is the paper's two flows (S->T on the target batch, T->S on the source
    batch: exactly ``rate_target`` and ``rate_source``) plus the weight times S->S (source ratings from the users' own
    source documents, X_source) and T->T (target ratings from their own target documents, X_target); both new
    correlations get gradient. At 0 the model has neither and its loss is the paper's."""
    pair = aspects["pair"]
    target, source = _fixed_batches(pair)
    before = aspects["config"]["in_domain_weight"]
    aspects["config"]["in_domain_weight"] = 0.5
    try:
        model = _model(aspects)
    finally:
        aspects["config"]["in_domain_weight"] = 0.0
    model.feeds["source"] = iter([source] * 3)
    t_users, t_items, t_labels = target["user_id"], target["item_id"], target["rating"].float()
    s_users, s_items, s_labels = source["user_id"], source["item_id"], source["rating"].float()
    mse = torch.nn.functional.mse_loss
    paper = mse(model.rate_target(t_users, t_items), t_labels) + mse(model.rate_source(s_users, s_items), s_labels)
    in_source = model.flow(s_users, s_items, 0, 0) + model.source_user_bias(s_users).squeeze(-1) + model.source_item_bias(
        s_items).squeeze(-1)
    in_target = model.flow(t_users, t_items, 1, 1) + model.user_bias(t_users).squeeze(-1) + model.item_bias(t_items).squeeze(-1)
    expected = paper + 0.5 * (mse(in_source, s_labels) + mse(in_target, t_labels))
    loss = model.calculate_loss(target)
    assert torch.allclose(loss, expected, atol=1e-5), (float(loss), float(expected))
    loss.backward()
    assert float(model.X_source.grad.abs().sum()) > 0 and float(model.X_target.grad.abs().sum()) > 0
    try:
        paper_model = _model(aspects)
    finally:
        aspects["config"]["in_domain_weight"] = before
    assert paper_model.X_source is None and paper_model.X_target is None
    paper_model.feeds["source"] = iter([source])
    expected = mse(paper_model.rate_target(t_users, t_items), t_labels) + mse(paper_model.rate_source(s_users, s_items), s_labels)
    assert torch.allclose(paper_model.calculate_loss(target), expected, atol=1e-5)


def test_softplus_correlation_starts_every_cell_active_and_leaky_relu_is_the_papers(aspects):
    config = aspects["config"]
    for activation in ("softplus", "leaky_relu"):
        config["correlation"] = activation
        model = _model(aspects)
        raw = model.queries[0] @ model.X @ model.queries[1].t()
        g = model.correlation()
        expected = torch.nn.functional.softplus(raw) if activation == "softplus" else torch.nn.functional.leaky_relu(raw)
        assert torch.allclose(g, expected)
        if activation == "softplus":
            assert float(g.min()) > 0.3  # every cell active from the start (softplus(0) = 0.69)
    config["correlation"] = "softplus"


def test_aspect_norm_centres_pooled_aspects_over_documents_and_keeps_empty_documents_at_zero():
    from recbole_transfer.methods.overlap_cdr.models.catn import AspectNorm

    torch.manual_seed(0)
    a = torch.randn(6, 2, 3) * 0.1 + 5.0
    present = torch.tensor([True, True, True, True, True, False])
    a[~present] = 0.0
    for mode in ("center", "standardize"):
        norm = AspectNorm(mode, 2, 3)
        norm.train()
        out = norm(a, present)
        assert torch.allclose(out[present].mean(0), torch.zeros(2, 3), atol=1e-3)  # the first batch sets the mean
        assert torch.equal(out[~present], torch.zeros(1, 2, 3))
        if mode == "standardize":
            assert torch.allclose(out[present].std(0, unbiased=False), torch.ones(2, 3), atol=1e-2)
        norm.eval()
        shifted = norm(a + 1.0, present)  # evaluation: the running statistics, not the batch's
        assert not torch.allclose(shifted[present].mean(0), torch.zeros(2, 3), atol=1e-3)
    assert torch.equal(AspectNorm("none", 2, 3)(a, present), a)


def test_early_stopping_waits_for_stopping_min_steps(aspects, monkeypatch):
    """A validation that only gets worse: RecBole's early stopping (``stopping_step`` 2) ends the fit after 4 epochs;
    with ``stopping_min_steps`` at 6 epochs' steps it may not stop before them."""
    from recbole_transfer.trainer import trainer as trainer_module

    original = trainer_module.TransferTrainer._valid_epoch

    def worse_each_time(self, valid_data, show_progress=False):
        score, result = original(self, valid_data, show_progress)
        self.calls = getattr(self, "calls", 0) + 1
        return float(self.calls), {**result, "rmse": float(self.calls)}  # RMSE: smaller is better

    monkeypatch.setattr(trainer_module.TransferTrainer, "_valid_epoch", worse_each_time)
    pair = aspects["pair"]
    steps = len(pair.target.train_data)
    runs = {}
    for minimum in (0, 6 * steps):
        config = pairs("TargetMF", "asrc", "atgt", [registry.get_method("overlap_cdr").scenario],
                       {**KEYS, "data_path": str(aspects["root"] / "data"), "protocol_dir": str(aspects["root"] / "protocols"),
                        "checkpoint_dir": str(aspects["root"] / "saved"), "stopping_step": 2, "epochs": 30,
                        "stopping_min_steps": minimum, "doc_field": None})[1]
        runs[minimum] = run_one("TargetMF", pair, config)[0]["epochs"]
    assert runs == {0: 4, 6 * steps: 6}, runs


def test_a_stages_valid_curve_starts_with_the_untrained_models_validation(aspects):
    """Epoch 0 of a run's validation curve is the model as built, before its first step (whether and when CATN leaves
    its start is read from it); the next points are RecBole's validations after each epoch."""
    from recbole_transfer.methods.overlap_cdr.runner import evaluate

    pair = aspects["pair"]
    config = pairs("TargetMF", "asrc", "atgt", [registry.get_method("overlap_cdr").scenario],
                   {**KEYS, "data_path": str(aspects["root"] / "data"), "protocol_dir": str(aspects["root"] / "protocols"),
                    "checkpoint_dir": str(aspects["root"] / "saved"), "epochs": 3, "stopping_step": 5,
                    "doc_field": None, "seed": 7})[1]
    row = run_one("TargetMF", pair, config)[0]
    curve = row["valid_curve"]
    assert [point[0] for point in curve] == [0, 1, 2, 3]
    pair.reset(7, config["train_batch_size"])
    untrained = build("TargetMF", config, pair)
    assert curve[0][2] == pytest.approx(evaluate(untrained, config, pair.target.valid_data, "target")[0]["rmse"])
    assert min(point[2] for point in curve[1:]) == pytest.approx(row["valid_rmse"])  # the kept epoch's validation
    assert curve[1][2] != curve[0][2]
    from recbole_transfer.methods.overlap_cdr import stages

    with pytest.MonkeyPatch.context() as patch:  # the epoch-0 evaluation changes nothing the run learns or reports
        patch.setattr(stages, "start_score", lambda trainer, valid: float("nan"))
        again = run_one("TargetMF", pair, config)[0]
    assert again["test_rmse"] == row["test_rmse"] and again["valid_rmse"] == row["valid_rmse"]
    assert [p[2] for p in again["valid_curve"][1:]] == [p[2] for p in curve[1:]]


def test_joint_overlap_trains_both_flows_on_the_kept_overlapping_users_with_proportional_source_batches(aspects):
    """The released code's choice: ``stages: [joint_overlap]`` trains on the target rows and the source rows of the
    users in both domains who keep target rows, only; ``source_batch: proportional`` sizes the source batch by the
    two sets' rows (equal: the target's batch size)."""
    from recbole_transfer.methods.overlap_cdr.stages import source_feed

    pair, config = aspects["pair"], aspects["config"]
    links = pair.links
    target = pair.feed("overlap", config)
    t_users = target._dataset.inter_feat["user_id"]
    assert bool((links.target_to_source[t_users] > 0).all())
    everything = pair.feed("target", config)
    model = _model(aspects)
    for mode in ("equal", "proportional"):
        model.source_batch = mode
        feed = source_feed(model, config, pair, "source_overlap", target)
        s_users = feed._dataset.inter_feat["user_id"]
        kept = links.source_to_target[s_users]
        assert bool((kept > 0).all()) and bool(links.target_trained[kept].all())
        assert len(feed._dataset) < len(pair.source.train_data._dataset)  # e.g. the cold users' source rows are out
        kept_users = set(torch.unique(kept).tolist())
        assert kept_users == set(torch.unique(t_users).tolist())  # the same users in both feeds
        expected = config["train_batch_size"] if mode == "equal" else round(
            config["train_batch_size"] * len(feed._dataset) / len(target._dataset))
        assert feed.config["train_batch_size"] == expected
        assert len(next(iter(feed))) == min(expected, len(feed._dataset))
    model.source_batch = "equal"
    assert source_feed(model, config, pair, "source", everything) is pair.source.train_data  # the default, unchanged
    keys = {**KEYS, "data_path": str(aspects["root"] / "data"), "protocol_dir": str(aspects["root"] / "protocols"),
            "checkpoint_dir": str(aspects["root"] / "saved"), "epochs": 1, "eta": 1.0}
    from recbole_transfer.methods.overlap_cdr.models.catn import CATN

    seen = {"target": set(), "source": set(), "source_batch": set()}
    original = CATN.calculate_loss

    def watched(self, interaction):  # every user whose row a step trains on, in both domains
        seen["target"].update(interaction["user_id"].tolist())
        feed = self.feeds["source"]
        batch = next(feed)
        seen["source"].update(batch["user_id"].tolist())
        seen["source_batch"].add(len(batch))
        self.feeds["source"] = iter([batch])
        try:
            return original(self, interaction)
        finally:
            self.feeds["source"] = feed

    runs = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(CATN, "calculate_loss", watched)
        for stages in ("joint", "joint_overlap"):
            for key in seen:
                seen[key] = set()
            runs[stages] = run_one("CATN", pair, pairs("CATN", "asrc", "atgt", [registry.get_method("overlap_cdr").scenario],
                                                       {**keys, "stages": [stages], "source_batch": "proportional"})[1])[0]
            kept = set(torch.unique(t_users).tolist())
            by_source = {int(links.source_to_target[u]) for u in seen["source"]}
            if stages == "joint_overlap":
                assert seen["target"] == kept and by_source == kept
            else:
                assert not by_source <= kept  # every source user: the cold users' source rows train too
            assert max(seen["source_batch"]) != config["train_batch_size"]  # proportional, not the target's size
    assert runs["joint"]["test_rmse"] != runs["joint_overlap"]["test_rmse"]


def test_the_word_window_product_is_the_convolution_and_an_even_window_is_refused(aspects):
    from recbole_transfer.errors import TransferConfigError
    from recbole_transfer.methods.overlap_cdr.models.catn import token_conv

    torch.manual_seed(0)
    x = torch.randn(4, 11, 6)
    for width in (1, 3, 5):
        conv = torch.nn.Conv1d(6, 5, width, padding=width // 2)
        assert torch.allclose(token_conv(conv, x), conv(x.transpose(1, 2)).transpose(1, 2), atol=1e-5)
    config = aspects["config"]
    before = config["conv_window"]
    config["conv_window"] = 4
    try:
        with pytest.raises(TransferConfigError, match="conv_window=4: give an odd width"):
            build("CATN", config, aspects["pair"])
    finally:
        config["conv_window"] = before
