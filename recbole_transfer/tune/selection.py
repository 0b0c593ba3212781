"""Choosing a search's winner on validation: the best trial, unless it is a transfer trial that does not beat the best
baseline trial by more than the margin (one paired standard error of their per-user validation differences, or a
number); the metric Tune maximises; the keys a search needs of its target's config."""

import numpy as np

from .. import registry
from ..errors import TransferConfigError, TransferError
from ..stats import paired_se
from ..trainer import load_checkpoint
from ..transfer import NO_TRANSFER
from .state import params_of


def metric_key(metric, bigger=True):
    """The reported key Tune selects on: ``valid_<metric>``, or ``valid_neg_<metric>`` (the value negated, added to
    every report by the trial) for a metric where smaller is better (e.g. RMSE): the search always maximises."""
    return "valid_" + ("" if bigger else "neg_") + str(metric).lower()


def check_run_keys(config, margin="se"):
    """The Tune metric of a target config; clear errors for what Tune cannot use."""
    metric = str(config["valid_metric"]).lower()
    if margin == "se" and "@" not in metric:
        raise TransferConfigError(
            f"valid_metric={config['valid_metric']!r} with scratch_margin: se: the paired margin needs a per-user "
            "top-k metric (e.g. Hit@10, NDCG@10); give scratch_margin a number for this metric"
        )
    if config["eval_step"] < 1:  # (its config checked that valid_metric is computed)
        raise TransferConfigError(f"eval_step={config['eval_step']!r}: the search needs a validation every 1..N epochs")
    return metric_key(metric, bool(config["valid_metric_bigger"]))


def valid_per_user(row, metric):
    """(data fingerprint, per-user validation values of ``metric`` ('valid_hit@10')) at a trial's best epoch,
    read from its checkpoint."""
    checkpoint = load_checkpoint(row["model_file"])
    values = (checkpoint.get("valid_per_user") or {}).get(metric.replace("valid_", "", 1))
    if values is None:
        raise TransferError(f"trial {row['label']}: its checkpoint holds no per-user validation {metric}")
    return checkpoint.get("fingerprint"), np.asarray(values, dtype=np.float64)


def valid_differences(metric):
    """``f(a, b)``: per-user validation differences of two trials, which must have seen the same data."""

    def differences(a, b):
        (print_a, values_a), (print_b, values_b) = valid_per_user(a, metric), valid_per_user(b, metric)
        if print_a != print_b or len(values_a) != len(values_b):
            raise TransferError(
                f"trials {a['label']!r} and {b['label']!r} were validated on different data (fingerprints {print_a} vs "
                f"{print_b}); they cannot be paired"
            )
        return values_a - values_b

    return differences


def selection_margin(setting, differences):
    """How much a transfer trial's validation metric must exceed the best baseline trial's to win.
    ``se``: one paired standard error, sd(d) / sqrt(n) of the per-user validation differences d (both trials
    are scored on the same users and candidates); a number: that margin."""
    if setting == "se":
        return paired_se(differences)
    return float(setting)


def choose_winner(rows, setting="se", differences=None, is_baseline=None):
    """The winning row and why: the best validation metric (ties: the earlier trial, the baseline first),
    unless it is a transfer trial that beats the best baseline trial by no more than the margin.
    ``differences(best, baseline)``: their per-user validation differences (needed by ``se``);
    ``is_baseline(config)``: the method's baseline test (default: the default method's)."""
    is_baseline = is_baseline or registry.default_method().is_baseline
    scored = [r for r in rows if r["best_valid"] is not None and not r["ended"].startswith("error")]
    if not scored:
        return None, "no trial reported a validation metric"
    best = max(scored, key=lambda r: (r["best_valid"], -r["index"]))
    scratch = [r for r in scored if is_baseline(params_of(r["config"]))]
    if is_baseline(params_of(best["config"])) or not scratch:
        return best, "best validation metric"
    base = max(scratch, key=lambda r: (r["best_valid"], -r["index"]))
    margin = selection_margin(setting, differences(best, base) if setting == "se" else None)
    lead = best["best_valid"] - base["best_valid"]
    name = "no transfer" if base["label"] == NO_TRANSFER else base["label"]
    if lead <= margin:
        return base, f"{best['label']} led {name} by {lead:.4f} <= margin {margin:.4f}: {name} kept"
    return best, f"leads {name} by {lead:.4f} > margin {margin:.4f}"
