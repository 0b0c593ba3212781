"""Search-space YAML: typed entries, branches, expansion, and an error naming each bad entry."""

import pytest

from recbole_transfer.errors import TransferConfigError
from recbole_transfer.tune import SearchSpace, trial_seed
from recbole_transfer.tune.space import BRANCH_KEY


def test_default_space_is_every_arm_frozen_or_finetuned_plus_scratch():
    space = SearchSpace.from_file()
    trials = space.trials(0)
    assert len(trials) == 15 and space.scheduler["type"] == "asha"
    assert trials[0] == {BRANCH_KEY: "none", "transfer": "none"}
    arms = {(t["transfer"], t.get("transfer_mode")) for t in trials[1:]}
    assert arms == {(f"config-{k}", m) for k in range(1, 8) for m in ("freeze", "finetune")}


def test_no_transfer_is_always_an_arm():
    space = SearchSpace({"branches": {"layers": {"transfer": {"type": "grid", "values": ["config-1", "config-5"]}}}})
    assert [t["transfer"] for t in space.trials(0)] == ["none", "config-1", "config-5"] and space.added_baseline
    assert space.trials(0)[0]["branch"] == "baseline (added)"
    # A choice that may draw 'none' is not a guaranteed arm; a branch named 'none' is not one by its name.
    choice = SearchSpace({"branches": {"l": {"transfer": {"type": "choice", "values": ["none", "config-1"]}}}})
    drawn = [t["transfer"] for t in choice.trials(1)]
    assert drawn[0] == "none" and (choice.added_baseline == ("none" not in drawn[1:]))
    named = SearchSpace({"branches": {"none": {"transfer": "config-1"}}})
    assert [t["transfer"] for t in named.trials(0)] == ["none", "config-1"] and named.added_baseline
    # A branch without a transfer entry takes the run's own transfer key (here: no transfer).
    lr_only = SearchSpace({"parameters": {"learning_rate": {"type": "grid", "values": [0.001, 0.002]}}})
    assert [t["transfer"] for t in lr_only.trials(0)] == ["none", "none"] and not lr_only.added_baseline
    assert [t["transfer"] for t in lr_only.trials(0, "config-5")] == ["none", "config-5", "config-5"]


def test_random_entries_are_drawn_per_sample_seeded_and_in_range():
    spec = {
        "num_samples": 4,
        "parameters": {"learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                       "embedding_size": {"type": "int", "low": 8, "high": 9}},
        "branches": {"none": {"transfer": "none"},
                     "layers": {"transfer": {"type": "grid", "values": ["config-1", "config-2"]},
                                "transfer_mode": {"type": "choice", "values": ["freeze", "finetune"]}}},
    }
    space = SearchSpace(spec)
    trials = space.trials(5)
    assert len(trials) == 4 + 2 * 4  # every branch grid point x num_samples, random entries present
    assert all(1e-4 <= t["learning_rate"] <= 1e-2 and t["embedding_size"] in (8, 9) for t in trials)
    assert {t["embedding_size"] for t in trials} == {8, 9}  # int high is inclusive
    assert space.trials(5) == trials and space.trials(6) != trials
    # Fixed-only branches run once, whatever num_samples says.
    fixed = SearchSpace({"num_samples": 3, "branches": {"a": {"transfer": "config-1"}}})
    assert len(fixed.trials(0)) == 2


def test_trial_seed_depends_on_global_seed_and_config_only():
    a = {BRANCH_KEY: "layers", "transfer": "config-1"}
    assert trial_seed(1, a) == trial_seed(1, {**a, BRANCH_KEY: "other"})
    assert trial_seed(1, a) != trial_seed(2, a) != trial_seed(1, {**a, "transfer": "config-2"})


BAD = [
    ({"branches": {"l": {"transfer": {"type": "gird", "values": ["config-1"]}}}}, "branches.l.transfer: type 'gird' unknown (did you mean 'grid'?)"),
    ({"parameters": {"learnig_rate": 0.1}}, "parameters.learnig_rate: not a RecBole or recbole_transfer config key (did you mean 'learning_rate'?)"),
    ({"parameters": {"learning_rate": {"type": "float", "low": 0.1, "high": 0.01}}}, "parameters.learning_rate: low=0.1 must be below high=0.01"),
    ({"parameters": {"learning_rate": {"type": "float", "low": 0, "high": 0.01, "log": True}}}, "parameters.learning_rate.low: log scale needs low > 0"),
    ({"parameters": {"learning_rate": {"type": "float", "low": 0.001, "hi": 0.01}}}, "parameters.learning_rate.hi: not a key of a float entry; allowed: high, log, low"),
    ({"parameters": {"embedding_size": {"type": "int", "low": 8.5, "high": 16}}}, "parameters.embedding_size.low: expected an int"),
    ({"branches": {"l": {"transfer_mode": {"type": "choice", "values": []}}}}, "branches.l.transfer_mode.values: expected a non-empty list"),
    ({"branches": {"l": {"transfer": "config-9"}}}, "branches.l.transfer: transfer='config-9': unknown configuration"),
    ({"scheduler": {"type": "asha", "reduction_factor": 1}}, "scheduler.reduction_factor: expected an integer >= 2"),
    ({"schedular": {"type": "asha"}}, "search space schedular: unknown key (did you mean 'scheduler'?)"),
    ({"scheduler": {"type": "hyperband"}}, "scheduler.type: 'hyperband' unknown"),
    ({"scheduler": {"type": "asha", "grace": 2}}, "scheduler.grace: not a asha setting; allowed: grace_period, reduction_factor"),
    ({"num_samples": 0}, "num_samples: expected an integer >= 1"),
    ({"branches": ["config-1"]}, "branches: expected a mapping"),
    ({"branches": {"l": {"keep_fraction": {"type": "grid", "values": [0.2, 0.5]}}}},
     "branches.l.keep_fraction: changes the data, but every trial of a search is scored on the same data"),
    ({"parameters": {"data_seed": {"type": "int", "low": 1, "high": 3}}}, "parameters.data_seed: changes the data"),
]


@pytest.mark.parametrize("spec,message", BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_each_bad_entry_raises_naming_it(spec, message):
    with pytest.raises(TransferConfigError) as err:
        SearchSpace(spec)
    assert message in str(err.value)


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(TransferConfigError, match="does not exist"):
        SearchSpace.from_file(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("branches: [unclosed\n")
    with pytest.raises(TransferConfigError, match="not valid YAML"):
        SearchSpace.from_file(str(bad))


def _row(index, transfer, valid, ended="finished"):
    return {"index": index, "config": {BRANCH_KEY: "b", "transfer": transfer}, "label": transfer,
            "best_valid": valid, "ended": ended}


def test_winner_keeps_no_transfer_unless_beaten_by_one_paired_standard_error():
    import numpy as np

    from recbole_transfer.tune import choose_winner, selection_margin

    noisy = np.array([1.0, -1.0] * 200)  # sd 1.0025, n 400: paired SE 0.0501
    assert selection_margin("se", noisy) == pytest.approx(noisy.std(ddof=1) / 20)
    assert selection_margin(0.01, None) == 0.01
    close = [_row(0, "none", 0.50), _row(1, "config-1", 0.52), _row(2, "config-2", None, "error: boom")]
    assert choose_winner(close, "se", lambda a, b: noisy)[0]["label"] == "none"  # lead 0.02 <= 0.0501
    assert choose_winner(close, 0)[0]["label"] == "config-1"  # plain argmax
    steady = np.array([0.02] * 390 + [0.0] * 10)  # the same lead on almost every user: tiny paired SE
    best, why = choose_winner(close, "se", lambda a, b: steady)
    assert best["label"] == "config-1" and "> margin 0.0002" in why
    tie = [_row(0, "none", 0.50), _row(1, "config-1", 0.50)]
    assert choose_winner(tie, 0)[0]["label"] == "none"
    assert choose_winner([_row(0, "none", None, "error: x")], "se")[0] is None


def test_scratch_margin_setting_is_checked():
    assert SearchSpace({}).scratch_margin == "se"
    with pytest.raises(TransferConfigError, match="scratch_margin: expected 'se' or a number >= 0"):
        SearchSpace({"scratch_margin": -0.1})


def test_the_paired_margin_needs_a_per_user_top_k_metric():
    from recbole_transfer.tune.selection import check_run_keys as _check_run_keys

    with pytest.raises(TransferConfigError, match="needs a per-user top-k metric"):
        _check_run_keys({"valid_metric": "AUC"}, "se")
