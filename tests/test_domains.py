"""Derived domains: rules, determinism, disjointness, errors; KL relatedness."""

import os

import numpy as np
import pandas as pd
import pytest

from recbole_transfer.data import kl_relatedness, materialize
from recbole_transfer.data.relatedness import histogram_bins
from recbole_transfer.errors import TransferConfigError, TransferDataError
from recbole_transfer.quick_start import domain_config, prepare_domain


def read(folder, name, suffix="inter"):
    return pd.read_csv(os.path.join(folder, name, f"{name}.{suffix}"), sep="\t", dtype=str)


def test_genre_and_user_split_give_disjoint_deterministic_domains(workdir):
    a = {"base": "ml-100k", "items": {"field": "class", "values": ["Drama"], "match": "first"}, "user_split": {"parts": 2, "keep": [0]}}
    b = {"base": "ml-100k", "items": {"field": "class", "values": ["Action"], "match": "first"},
         "user_split": {"parts": 2, "keep": [1]}, "keep_fraction": 0.5, "seed": 3}
    folder = materialize("a", a, "dataset/", "cache")
    materialize("b", b, "dataset/", "cache")
    ia, ib = read(folder, "a"), read(folder, "b")
    assert set(ia["user_id:token"]).isdisjoint(ib["user_id:token"])
    assert set(ia["item_id:token"]).isdisjoint(ib["item_id:token"])
    items = read(folder, "a", "item")
    assert items["class:token_seq"].str.split(" ").str[0].eq("Drama").all()
    # keep_fraction halves each user's interactions (at least one kept).
    full = materialize("b_full", {**b, "keep_fraction": 1.0}, "dataset/", "cache")
    per_user_full = read(full, "b_full").groupby("user_id:token").size()
    per_user = ib.groupby("user_id:token").size()
    expected = np.maximum(1, np.round(per_user_full * 0.5)).astype(int)
    assert (per_user.reindex(expected.index) == expected).all()
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


def test_spec_changes_rebuild_the_cache(workdir):
    spec = {"base": "ml-100k", "users": {"field": "gender", "values": ["F"]}}
    folder = materialize("f", spec, "dataset/", "cache")
    n1 = len(read(folder, "f"))
    materialize("f", {**spec, "keep_fraction": 0.2}, "dataset/", "cache")
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
    spec = {"base": "ml-100k", "label": {"field": "age", "bins": [18, 25, 35, 45, 50, 56]}, "seed": 4,
            "user_holdout": {"valid": 0.1, "test": 0.2}}
    folder = materialize("age", spec, "dataset/", "cache")
    parts = {p: read(folder, "age", f"{p}.inter") for p in ("train", "valid", "test")}
    users = [set(parts[p]["user_id:token"]) for p in parts]
    assert sum(len(u) for u in users) == len(set.union(*users)) == 943  # every user in exactly one part
    assert not os.path.exists(os.path.join(folder, "age", "age.user"))  # the label is not also a feature
    labels = pd.concat(parts.values())["item_id:token"]
    assert set(labels) == {"<18", "18-24", "25-34", "35-44", "45-49", "50-55", "56+"}
    share = {p: parts[p]["item_id:token"].value_counts(normalize=True) for p in parts}
    assert (share["test"] - share["train"]).abs().max() < 0.03  # stratified by label
    assert abs(len(parts["test"]) / 943 - 0.2) < 0.01
    low = materialize("age_low", {**spec, "user_holdout": {"valid": 0.1, "test": 0.2, "label_fraction": 0.1}}, "dataset/", "cache")
    assert set(read(low, "age_low", "test.inter")["user_id:token"]) == users[2]  # same test users
    assert abs(len(read(low, "age_low", "train.inter")) - 0.1 * len(parts["train"])) <= 7
    config = domain_config("PeterRec", "age", None, {"domains": {"age": spec}, "domain_cache_dir": "cache",
                                                      "source_checkpoint": "unused.pth"})
    assert config["benchmark_filename"] == ["train", "valid", "test"]


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
