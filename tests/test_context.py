"""Context for one-to-many transfer (issue 6, data part): derived context fields, the ml-100k region
scenario (users disjoint across regions, sparsified targets, domain-specific items), and context tokens
aligned across domains although RecBole numbers them differently."""

import os

import pandas as pd
import pytest
import torch
import yaml
from recbole.data import create_dataset

from recbole_transfer.data import materialize
from recbole_transfer.data.context import align_tokens, copy_aligned
from recbole_transfer.errors import TransferConfigError, TransferDataError
from recbole_transfer.pipeline.two_stage import prepare_domain
from recbole_transfer.request import domain_config
from recbole_transfer.registry import get_method

SCENARIO = get_method("mmtnet").scenario  # the ml-100k region scenario


def domains():
    with open(SCENARIO, encoding="utf-8") as f:
        return yaml.safe_load(f)


def read(folder, name, suffix="inter"):
    return pd.read_csv(os.path.join(folder, name, f"{name}.{suffix}"), sep="\t", dtype=str, keep_default_na=False)


def test_region_scenario_users_disjoint_targets_sparse_items_per_domain(workdir):
    spec = domains()
    folder = None
    users, items = {}, {}
    for name in [spec["source"]] + spec["targets"]:
        folder = materialize(name, spec["domains"][name], "dataset/", "cache")
        inter = read(folder, name)
        users[name], items[name] = set(inter["user_id:token"]), set(inter["item_id:token"])
        assert inter["item_id:token"].str.startswith(f"{name}:").all()  # domain-specific item ids
        zips = read(folder, name, "user")
        assert len(zips) == len(users[name])
    names = list(users)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert users[a].isdisjoint(users[b]) and items[a].isdisjoint(items[b])
    # the source is the dense union (51.6k interactions); a target keeps about 20 % of its region
    source = read(folder, spec["source"])
    assert 50_000 < len(source) < 53_000
    # each target user keeps about 20 % of her TRAINING interactions (the protocol thins; valid / test stay)
    data = prepare_domain(domain_config("Popularity", "region_0", [SCENARIO], {"domain_cache_dir": "cache"}))
    rows = data.protocol.rows
    assert 0.18 < len(rows["train"]) / len(rows["train_full"]) < 0.24
    assert len(rows["valid"]) == len(rows["test"]) == data.dataset.user_num - 1  # one held-out item per user


def test_context_fields_are_derived_from_the_base_fields(workdir):
    spec = domains()["domains"]["region_3"]
    folder = materialize("region_3", spec, "dataset/", "cache")
    inter, user, item = read(folder, "region_3"), read(folder, "region_3", "user"), read(folder, "region_3", "item")
    stamps = pd.to_datetime(inter["timestamp:float"].astype(float), unit="s", utc=True)
    assert (inter["hour:token"] == stamps.dt.hour.map("h{:02d}".format)).all()
    assert set(inter["weekday:token"]) <= {"mon", "tue", "wed", "thu", "fri", "sat", "sun"}
    ages = user["age:token"].astype(int)
    assert (user.loc[ages < 18, "age_bucket:token"] == "<18").all() and (user.loc[ages >= 56, "age_bucket:token"] == "56+").all()
    assert (user.loc[(ages >= 25) & (ages < 35), "age_bucket:token"] == "25-34").all()
    known = item["release_year:token"] != ""
    assert (item.loc[known, "decade:token"] == item.loc[known, "release_year:token"].str[:3] + "0s").all()


def test_context_tokens_align_across_domains_although_recbole_ids_differ(workdir):
    scenario = domains()
    config_dict = {"domains": scenario["domains"], "load_col": scenario["load_col"], "domain_cache_dir": "cache"}
    datasets = {name: create_dataset(domain_config("Popularity", name, None, config_dict))
                for name in ("regions_src", "region_7")}
    src, tgt = datasets["regions_src"], datasets["region_7"]
    differs = 0
    for field in ("hour", "occupation", "age_bucket", "decade", "class"):
        source_tokens, target_tokens = src.field2id_token[field], tgt.field2id_token[field]
        rows = align_tokens(source_tokens, target_tokens, field)
        for tid, sid in enumerate(rows[1:], start=1):
            if sid >= 0:
                assert source_tokens[sid] == target_tokens[tid]
        differs += int((rows[1:] != range(1, len(rows))).any())
    assert differs > 0  # RecBole's ids alone would mix tokens up: alignment is needed
    weight_src = torch.arange(len(src.field2id_token["occupation"]), dtype=torch.float32).unsqueeze(1)
    weight_tgt = torch.full((len(tgt.field2id_token["occupation"]), 1), -1.0)
    rows = align_tokens(src.field2id_token["occupation"], tgt.field2id_token["occupation"])
    missing = copy_aligned(weight_tgt, weight_src, rows)
    assert missing == int((rows < 0).sum())
    for tid, token in enumerate(tgt.field2id_token["occupation"]):
        if rows[tid] >= 0:
            assert src.field2id_token["occupation"][int(weight_tgt[tid, 0])] == token


def test_disjoint_vocabularies_and_bad_context_specs_are_errors(workdir):
    with pytest.raises(TransferDataError, match="share nothing"):
        align_tokens(["[PAD]", "a", "b"], ["[PAD]", "c"], "hour")
    with pytest.raises(TransferConfigError, match="unknown \\['hours'\\] \\(did you mean 'hour'\\?\\)"):
        materialize("x", {"base": "ml-100k", "context": ["hours"]}, "dataset/", "cache")
    with pytest.raises(TransferConfigError, match="label domain has no context"):
        materialize("x", {"base": "ml-100k", "label": {"field": "gender"}, "context": ["hour"]}, "dataset/", "cache")


# ----- the MMT-Net model (reconstructed; transfer strategies come next) --------------------------------

from recbole_transfer.config import get_model  # noqa: E402
from recbole_transfer.methods.mmtnet.model import SHARED_MODULES  # noqa: E402
from recbole_transfer.pipeline.two_stage import build_model, train_domain  # noqa: E402


def region_data(name, **extra):
    scenario = domains()
    keys = {"domains": scenario["domains"], "load_col": scenario["load_col"], "domain_cache_dir": "cache",
            "epochs": 2, "show_progress": False, **extra}
    return prepare_domain(domain_config("MMTNet", name, None, keys))


def test_mmtnet_shared_modules_have_the_same_keys_in_every_domain_and_ids_stay_apart(workdir):
    models = {name: build_model(region_data(name)) for name in ("regions_src", "region_7")}
    shared = {name: {k: v.shape for k, v in m.state_dict().items() if k.split(".")[0] in SHARED_MODULES}
              for name, m in models.items()}
    assert shared["regions_src"].keys() == shared["region_7"].keys()
    tables = [k for k in shared["regions_src"] if k.startswith("context.tables.")]
    assert {k.split(".")[2] for k in tables} == {"hour", "weekday", "age_bucket", "gender", "occupation", "class", "decade"}
    assert any(shared["regions_src"][k] != shared["region_7"][k] for k in tables)  # vocabularies differ: align by token
    assert all(shared["regions_src"][k] == shared["region_7"][k] for k in shared["regions_src"] if k not in tables)
    assert not any("user_id" in k or "item_id" in k for k in shared["regions_src"])


def test_mmtnet_negatives_keep_the_positive_context_and_training_lowers_the_loss(workdir):
    data = region_data("region_3", train_neg_sample_args={"distribution": "uniform", "sample_num": 4, "alpha": 1.0,
                                                          "dynamic": False, "candidate_num": 0})
    batch = next(iter(data.train_data))
    label = batch["label"]
    n_pos = int(label.sum())
    assert len(label) == 5 * n_pos  # RecBole's point-wise sampler: each positive's row, then 4 copies
    for field in ("hour", "weekday", "age_bucket", "occupation"):  # with the item swapped
        assert torch.equal(batch[field][label == 0].view(4, n_pos), batch[field][label == 1].repeat(4, 1))
    out = train_domain(data, "target", saved=False, verbose=False, evaluate_test=False)
    losses = list(out["trainer"].train_loss_dict.values())
    assert losses[-1] < losses[0]


def test_mmtnet_unknown_context_field_lists_the_loaded_ones(workdir):
    data = region_data("region_8")
    data.config["context_fields"] = ["hour", "ocupation"]
    with pytest.raises(TransferConfigError, match="unknown \\['ocupation'\\] \\(did you mean 'occupation'\\?\\).*load_col"):
        get_model("MMTNet")(data.config, data.train_data._dataset)


@pytest.mark.slow
def test_mmtnet_reads_a_signal_only_the_context_carries(tmp_path, workdir):
    """Planted context: the item's cluster is set by (mood, slot), users carry nothing. MMT-Net reads it;
    BPR (user and item embeddings, no context) cannot."""
    from recbole_transfer.data.synthetic import write_planted_context
    from recbole_transfer.pipeline.two_stage import run_transfer

    write_planted_context(str(tmp_path), "ctx", seed=1)
    # 10 epochs (20 before the suite was sped up): the gap stays near 0.4 on seeds 1-4, the threshold is 0.3
    keys = {"data_path": str(tmp_path), "context_fields": ["mood", "slot"], "epochs": 10, "show_progress": False,
            "load_col": {"inter": ["user_id", "item_id", "timestamp", "mood", "slot"]}}
    hit = {m: run_transfer(m, None, "ctx", None, keys, saved=False, verbose=False)["test_result"]["hit@10"]
           for m in ("MMTNet", "BPR")}
    assert hit["MMTNet"] >= hit["BPR"] + 0.3, hit
