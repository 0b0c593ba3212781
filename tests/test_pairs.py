"""Domain pairs that share users: raw tokens align them (RecBole numbers each dataset on its own)."""

import pytest
from recbole.data import create_dataset

from recbole_transfer.data import overlap
from recbole_transfer.data.synthetic import write_planted_domain
from recbole_transfer.errors import TransferDataError
from recbole_transfer.request import domain_config
def _dataset(data, name):
    return create_dataset(domain_config("BPR", name, None, {"data_path": str(data), "show_progress": False}))


def test_overlap_aligns_raw_tokens_not_recbole_ids(workdir):
    data = workdir / "data"
    write_planted_domain(str(data), "a", n_users=40, n_items=60, per_user=6, seed=1, user_prefix="p")
    write_planted_domain(str(data), "b", n_users=30, n_items=50, per_user=6, seed=2, user_prefix="p")
    write_planted_domain(str(data), "c", n_users=30, n_items=50, per_user=6, seed=3)  # users of its own
    a, b, c = (_dataset(data, n) for n in "abc")
    found = overlap(a, b)
    assert found.both == sorted(f"pu{i}" for i in range(30))
    assert found.source_only == sorted(f"pu{i}" for i in range(30, 40)) and found.target_only == []
    assert overlap(a, c).both == []
    linked = overlap(c, b, link={f"cu{i}": f"pu{i}" for i in range(20)})  # a link file maps other names
    assert len(linked.both) == 20 and len(linked.source_only) == 10 and len(linked.target_only) == 10
    assert overlap(a, b, field="item_id").both == []  # item tokens are the domains' own
    assert "| 40 | 30 | 10 | 0 |" in found.table()
    with pytest.raises(TransferDataError, match="'nope' is not a token field"):
        overlap(a, b, field="nope")


def test_show_overlap_and_bad_pairs_exit_2(small_domains, run_cli):
    data = f"--data_path={small_domains['data_path']}"
    code, _out, err = run_cli(["--show_overlap", "--source=src", "--target=tgt", data])
    assert code == 2 and "'src' and 'tgt' share no user_id token" in err  # the planted pair shares no user
    code, _out, err = run_cli(["--show_overlap", "--source=src", data])
    assert code == 2 and "give both domains" in err
    code, _out, err = run_cli(["--show_overlap", "--source=src", "--target=tgt", "--overlap_field=nope", data])
    assert code == 2 and "'nope' is not a token field" in err


def test_ml100k_drama_and_non_drama_share_894_users(workdir, run_cli):
    """The bundled pair of the overlap issue: Drama items vs the rest, ratings >= 3, users and items with >= 5."""
    rule = {"field": "class", "values": ["Drama"], "match": "any"}
    config = {"val_interval": {"rating": "[3,inf)"}, "user_inter_num_interval": "[5,inf)", "item_inter_num_interval": "[5,inf)"}
    (workdir / "pair.yaml").write_text(
        "domain_cache_dir: cache\ndomains:\n"
        f"  drama: {{base: ml-100k, items: {rule}, config: {config}}}\n"
        f"  nondrama: {{base: ml-100k, items: {dict(rule, exclude=True)}, config: {config}}}\n".replace("'", '"'))
    code, out, err = run_cli(["--show_overlap", "--source=drama", "--target=nondrama", "--config_files=pair.yaml"])
    assert code == 0, err
    assert "source drama: 912 users, 491 items, 33997 interactions" in out
    assert "target nondrama: 924 users, 711 items, 47531 interactions" in out
    assert "| 942 | 894 | 18 | 30 |" in out


def test_cold_start_split_is_exact_disjoint_nested_and_fixed_by_the_data_seed():
    from recbole_transfer.methods.overlap_cdr.pair import cold_start_split
    from recbole_transfer.errors import TransferConfigError

    shared = [f"u{i}" for i in range(894)]
    full = cold_start_split(shared, data_seed=7)
    cold = full.cold_valid + full.cold_test
    assert len(cold) == 447 and len(full.cold_valid) == round(0.4 * 447) == 179 and len(full.cold_test) == 268
    assert len(full.warm_kept) == 447 and full.warm_dropped == []
    assert not set(cold) & set(full.warm_kept) and sorted(cold + full.warm_kept) == sorted(shared)
    kept = {eta: set(cold_start_split(shared, 7, eta).warm_kept) for eta in (1.0, 0.5, 0.2, 0.1)}
    assert [len(kept[e]) for e in (1.0, 0.5, 0.2, 0.1)] == [447, round(0.5 * 447), round(0.2 * 447), round(0.1 * 447)]
    assert kept[0.1] < kept[0.2] < kept[0.5] < kept[1.0]  # nested: a smaller eta keeps a subset
    small = cold_start_split(shared, 7, 0.2)
    assert small.cold_test == full.cold_test and small.cold_valid == full.cold_valid  # eta never moves the cold users
    assert cold_start_split(list(reversed(shared)), 7) == full  # the users' order does not matter, the seed does
    assert cold_start_split(shared, 8).cold_test != full.cold_test
    for bad in (0, 1.5, -0.1, "half", True):
        with pytest.raises(TransferConfigError, match="eta=.*: must be a number in \\(0, 1\\]"):
            cold_start_split(shared, 7, eta=bad)
    with pytest.raises(TransferConfigError, match="give 0 validation and 1 test users"):
        cold_start_split(["u1", "u2"], 7)
