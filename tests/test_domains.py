"""Derived domains: rules, determinism, disjointness, errors; KL relatedness."""

import os

import numpy as np
import pandas as pd
import pytest

from recbole_transfer.data import kl_relatedness, materialize
from recbole_transfer.data.relatedness import histogram_bins
from recbole_transfer.errors import TransferConfigError, TransferDataError
from recbole_transfer.pipeline.two_stage import prepare_domain
from recbole_transfer.request import domain_config
def read(folder, name, suffix="inter"):
    return pd.read_csv(os.path.join(folder, name, f"{name}.{suffix}"), sep="\t", dtype=str)


def test_genre_and_user_split_give_disjoint_deterministic_domains(workdir):
    a = {"base": "ml-100k", "items": {"field": "class", "values": ["Drama"], "match": "first"}, "user_split": {"parts": 2, "keep": [0]}}
    b = {"base": "ml-100k", "items": {"field": "class", "values": ["Action"], "match": "first"},
         "user_split": {"parts": 2, "keep": [1]}, "keep_fraction": 0.5}
    folder = materialize("a", a, "dataset/", "cache")
    materialize("b", b, "dataset/", "cache")
    ia, ib = read(folder, "a"), read(folder, "b")
    assert set(ia["user_id:token"]).isdisjoint(ib["user_id:token"])
    assert set(ia["item_id:token"]).isdisjoint(ib["item_id:token"])
    items = read(folder, "a", "item")
    assert items["class:token_seq"].str.split(" ").str[0].eq("Drama").all()
    # keep_fraction is the protocol's (training interactions only): the written domain holds every interaction
    full = materialize("b_full", {**b, "keep_fraction": 1.0}, "dataset/", "cache")
    assert len(read(full, "b_full")) == len(ib)
    assert {"rating:float", "timestamp:float"} <= set(ib.columns)  # the parent's fields RecBole's models read
    # Deterministic: a rebuild in another cache gives the same bytes.
    other = materialize("b", b, "dataset/", "cache2")
    assert open(os.path.join(folder, "b", "b.inter"), "rb").read() == open(os.path.join(other, "b", "b.inter"), "rb").read()


def test_user_attribute_time_window_and_prefix(workdir):
    spec = {"base": "ml-100k", "users": {"field": "zip_code", "values": ["9"], "match": "prefix"},
            "time": {"start": "1997-11-01", "end": "1998-01-01"}, "prefix_ids": True}
    folder = materialize("west", spec, "dataset/", "cache")
    inter, users = read(folder, "west"), read(folder, "west", "user")
    assert users["zip_code:token"].str.startswith("west:").sum() == 0  # only ids are prefixed
    assert users["user_id:token"].str.startswith("west:").all() and inter["item_id:token"].str.startswith("west:").all()
    assert users["zip_code:token"].str.startswith("9").all()
    ts = inter["timestamp:float"].astype(float)
    assert ts.min() >= pd.Timestamp("1997-11-01", tz="UTC").timestamp()
    assert ts.max() < pd.Timestamp("1998-01-01", tz="UTC").timestamp()
    occ = materialize("students", {"base": "ml-100k", "users": {"field": "occupation", "values": ["student"]}}, "dataset/", "cache")
    assert read(occ, "students", "user")["occupation:token"].eq("student").all()


def test_row_order_base_keeps_the_base_files_order(workdir):
    """``row_order: base`` writes the kept rows in the base file's order (what RecBole's random-order split shuffles);
    the default sorts them by user, time and item. The same rows either way."""
    rule = {"field": "class", "values": ["Drama"], "match": "any"}
    base = read(materialize("kept", {"base": "ml-100k", "items": rule, "row_order": "base"}, "dataset/", "cache"), "kept")
    tidy = read(materialize("tidy", {"base": "ml-100k", "items": rule}, "dataset/", "cache"), "tidy")
    from recbole_transfer.data.derive import dataset_dir

    whole = pd.read_csv(os.path.join(dataset_dir("ml-100k", "dataset/"), "ml-100k.inter"), sep="\t", dtype=str)
    drama = set(base["item_id:token"])
    expected = whole[whole["item_id:token"].isin(drama)].reset_index(drop=True)
    assert base.reset_index(drop=True).equals(expected[base.columns])
    assert not tidy.reset_index(drop=True).equals(base.reset_index(drop=True))
    key = ["user_id:token", "item_id:token", "timestamp:float"]
    assert sorted(map(tuple, tidy[key].values)) == sorted(map(tuple, base[key].values))


def test_spec_changes_rebuild_the_cache(workdir):
    spec = {"base": "ml-100k", "users": {"field": "gender", "values": ["F"]}}
    folder = materialize("f", spec, "dataset/", "cache")
    n1 = len(read(folder, "f"))
    materialize("f", {**spec, "time": {"start": "1997-12-01"}}, "dataset/", "cache")
    assert len(read(folder, "f")) < n1


@pytest.mark.parametrize(
    "spec, error, message",
    [
        ({"base": "ml-100k", "items": {"field": "genre", "values": ["Drama"]}}, TransferConfigError, r"field='genre': no such field; fields: .*class"),
        ({"base": "ml-100k", "item": {}}, TransferConfigError, r"domains.d.item: unknown key \(did you mean 'items'\?\)"),
        ({"base": "ml-100k", "keep_fraction": 1.5}, TransferConfigError, r"keep_fraction=1.5"),
        ({"base": "ml-100k", "items": {"field": "class", "values": ["Drama"], "match": "start"}}, TransferConfigError, "match='start'"),
        ({"base": "ml-100k", "user_split": {"parts": 2, "keep": [2]}}, TransferConfigError, "user_split"),
        ({"base": "ml-100k", "items": {"field": "class", "values": ["NoSuchGenre"]}}, TransferDataError, "keep no interaction"),
        ({"base": "nowhere"}, TransferDataError, r"domains.d.base='nowhere': no atomic file"),
        ({"base": "ml-100k", "seed": 3}, TransferConfigError, r"domains.d.seed: thinning and held-out users follow the run's data_seed"),
        ({"base": "ml-100k", "row_order": "file"}, TransferConfigError, r"domains.d.row_order='file': allowed sorted, base"),
    ],
)
def test_bad_domain_specs(workdir, spec, error, message):
    with pytest.raises(error, match=message):
        materialize("d", spec, "dataset/", "cache")


def test_too_few_items_for_uni99_and_missing_dataset(small_domains):
    with pytest.raises(TransferDataError, match=r"target='tiny': \d+ items.*99 negatives"):
        prepare_domain(domain_config("TransferMLP", "tiny", None, small_domains, key="target"), key="target")
    with pytest.raises(TransferDataError, match=r"source='nosuch': no atomic file"):
        domain_config("TransferMLP", "nosuch", None, small_domains, key="source")


def test_kl_relatedness():
    rng = np.random.default_rng(0)
    source = rng.geometric(0.05, size=2000)
    close, far = rng.geometric(0.05, size=2000), rng.geometric(0.5, size=2000)
    assert kl_relatedness(source, source) == pytest.approx(0.0)
    assert kl_relatedness(source, far) > 10 * kl_relatedness(source, close) > 0
    assert np.isfinite(kl_relatedness(np.array([1, 1]), np.array([500])))  # disjoint supports: smoothed
    assert list(histogram_bins(100)[:3]) == [1, 2, 3] and histogram_bins(100)[-1] > 100


def test_label_task_with_stratified_user_holdout(workdir):
    spec = {"base": "ml-100k", "label": {"field": "age", "bins": [18, 25, 35, 45, 50, 56]},
            "user_holdout": {"valid": 0.1, "test": 0.2}}
    low_spec = {**spec, "user_holdout": {"valid": 0.1, "test": 0.2, "label_fraction": 0.1}}
    keys = {"domains": {"age": spec, "age_low": low_spec}, "domain_cache_dir": "cache", "data_seed": 4,
            "metrics": ["Hit"], "topk": [1], "valid_metric": "Hit@1",
            "eval_args": {"split": {"RS": [0.8, 0.1, 0.1]}, "group_by": "user", "order": "RO", "mode": "full"}}
    folder = materialize("age", spec, "dataset/", "cache")
    assert not os.path.exists(os.path.join(folder, "age", "age.user"))  # the label is not also a feature
    assert len(read(folder, "age")) == 943  # one (user, label) row per user; the holdout is the protocol's

    def parts(name):
        data = prepare_domain(domain_config("Popularity", name, None, keys))
        ds = data.dataset
        frames = {p: d._dataset.inter_feat for p, d in zip(("train", "valid", "test"), (data.train_data, data.valid_data, data.test_data))}
        users = {p: set(ds.id2token(ds.uid_field, f[ds.uid_field].numpy())) for p, f in frames.items()}
        labels = {p: pd.Series(ds.id2token(ds.iid_field, f[ds.iid_field].numpy())) for p, f in frames.items()}
        return users, labels

    users, labels = parts("age")
    assert sum(len(u) for u in users.values()) == len(set.union(*users.values())) == 943  # every user in one part
    assert set(pd.concat(labels.values())) == {"<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"}
    share = {p: labels[p].value_counts(normalize=True) for p in labels}
    assert (share["test"] - share["train"]).abs().max() < 0.03  # stratified by label
    assert abs(len(users["test"]) / 943 - 0.2) < 0.01
    low_users, _ = parts("age_low")
    assert low_users["test"] == users["test"] and low_users["valid"] == users["valid"]  # same held-out users
    assert low_users["train"] < users["train"] and abs(len(low_users["train"]) - 0.1 * len(users["train"])) <= 7
    keys["data_seed"] = 5
    assert parts("age")[0]["test"] != users["test"]  # another data seed, other held-out users


def test_exclude_rule_keeps_the_complement(workdir):
    rule = {"field": "class", "values": ["Comedy"], "match": "first"}
    a = materialize("c", {"base": "ml-100k", "items": rule}, "dataset/", "cache")
    b = materialize("not_c", {"base": "ml-100k", "items": {**rule, "exclude": True}}, "dataset/", "cache")
    ia, ib = read(a, "c"), read(b, "not_c")
    assert len(ia) + len(ib) == 100000 and set(ia["item_id:token"]).isdisjoint(ib["item_id:token"])


@pytest.mark.parametrize("spec,message", [
    ({"base": "ml-100k", "label": {"field": "gendr"}}, "did you mean 'gender'"),
    ({"base": "ml-100k", "label": {"field": "gender", "bins": [30, 20]}}, "increasing numbers"),
    ({"base": "ml-100k", "label": {"field": "gender"}, "user_holdout": {"valid": 0.5, "test": 0.5}}, "leaves no training users"),
    ({"base": "ml-100k", "label": {"field": "gender"}, "user_holdout": {"tests": 0.2}}, "did you mean 'test'"),
])
def test_bad_label_and_holdout_specs(workdir, spec, message):
    with pytest.raises((TransferConfigError, TransferDataError), match=message):
        materialize("bad", spec, "dataset/", "cache")


def test_scale_pair_has_the_shape_of_a_large_log(tmp_path):
    """``write_scale_pair``: n // 20 users and n // 100 items per domain, about n rows, no repeated (user, item), every
    user with at least 5 rows, heavy-tailed items (Zipf) and users (lognormal), the source sharing 90 % of the target's
    users by token, and no item token; the same seed writes the same files."""
    from recbole_transfer.data.synthetic import write_scale_pair

    counts = write_scale_pair(str(tmp_path / "a"), 20000, seed=3)
    source, target = (pd.read_csv(tmp_path / "a" / n / f"{n}.inter", sep="\t") for n in ("ssrc", "stgt"))
    for frame, name in ((source, "ssrc"), (target, "stgt")):
        assert len(frame) == counts[name]["rows"] and 0.85 * 20000 <= len(frame) <= 20000
        assert not frame.duplicated(["user_id:token", "item_id:token"]).any()
        per_user = frame["user_id:token"].value_counts()
        assert per_user.min() >= 5 and per_user.max() >= 3 * per_user.median()  # a long tail of heavy users
        per_item = frame["item_id:token"].value_counts()
        assert frame["item_id:token"].max() - frame["item_id:token"].min() < 200  # 200 items per domain
        assert per_item.max() > 10 * per_item.median()  # Zipf items
    assert target["item_id:token"].max() < 200 <= source["item_id:token"].min()
    assert target["user_id:token"].nunique() == 1000
    shared = set(source["user_id:token"]) & set(target["user_id:token"])
    assert len(shared) == 900 and source["user_id:token"].nunique() == 1000
    write_scale_pair(str(tmp_path / "b"), 20000, seed=3)
    assert (tmp_path / "a" / "stgt" / "stgt.inter").read_text() == (tmp_path / "b" / "stgt" / "stgt.inter").read_text()
    with pytest.raises(ValueError, match="overlap=1.5"):
        write_scale_pair(str(tmp_path / "c"), 20000, overlap=1.5)
