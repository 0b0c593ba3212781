"""One source, many targets, many transfer arms: the two-stage runner's scenario (the Table 3 experiments).

``run_scenario`` pretrains the source once per seed, then trains every (target, arm) pair through
``run_transfer`` and collects test metrics, per user too. Within a seed every arm of a target is scored on
the same data: the seed is the replicate's ``data_seed`` (split, thinning, candidates) and its training seed.
Arms are the method's (``Method.arms``, or ``--arms``): values its strategy understands, or baseline arms that
train another model on the target alone (``pop``: popularity, for every method; a method may add its own).
The tables of the rows are in :mod:`recbole_transfer.report`.
"""

import time

from .. import registry
from ..errors import TransferConfigError
from ..request import Request
from .two_stage import pretrain, transfer

# Baseline arms of every method: another RecBole model trained on the target alone. pop: items by training count (on a
# profile task, the majority label); ItemKNN and EASE: RecBole's own models, on the target's training rows.
SHARED_BASELINES = {"pop": "Popularity", "ItemKNN": "ItemKNN", "EASE": "EASE"}
HISTORY_FREE = {"Popularity"}  # baseline models that score a user without her training rows in the target


def check_baseline(request, target, model):
    """Refuse a baseline model that cannot score ``target``'s test users: a model of the target's own rows (ItemKNN,
    EASE) scores a user by her training rows there, and a domain with ``label`` (a profile task) or ``user_holdout``
    (users held out of training) gives its evaluated users none."""
    if model in HISTORY_FREE or model not in SHARED_BASELINES.values():
        return
    domain = (request.keys["domains"] or {}).get(target) or {}
    why = [k for k in ("label", "user_holdout") if domain.get(k)]
    if why:
        raise TransferConfigError(
            f"arms: {model} cannot score target {target!r}: its domain sets {' and '.join(why)}, so its evaluated users "
            f"have no training rows in the target and {model} (a model of the target's rows alone) would rank every "
            "item alike for them; use pop, or a model that reads the source history"
        )


def baseline_models(method):
    """{arm: model} of the arms that train another model on the target alone."""
    return {**SHARED_BASELINES, **method.baseline_models}


def _kind(method, arm, baselines):
    """A row's kind: ``baseline`` (a baseline model, or the method's baseline arm), ``control`` (an arm the method
    declares a control) or ``transfer``."""
    if arm in baselines or arm == method.baseline_arm:
        return "baseline"
    return "control" if arm in method.controls else "transfer"


def arm_label(method, arm):
    """Validate an arm of ``method``'s scenario and return its name in tables."""
    if arm in baseline_models(method):
        return arm
    if method.strategy is None:
        raise TransferConfigError(f"arms: method {method.name!r} has no transfer strategy; its arms are {method.arms}")
    other = registry.owner_of_arm(method, arm)
    if other is not None:  # checked before the source trains: this method's strategy could misread it
        raise TransferConfigError(
            f"arms: {arm!r} is an arm of method {other.name!r}, not of {method.name!r} (its arms: {', '.join(method.arms)})"
        )
    return method.strategy.arm_label(arm)


def check_strategies(method, request, configs):
    """Build the strategy of every arm or trial configuration (config keys) before anything trains: a bad key of
    the method (an unknown value of one of its keys) fails in seconds, not after the source stage."""
    if method.strategy is None:
        return
    seen = set()
    for keys in configs:
        if repr(sorted(keys.items())) in seen:
            continue
        seen.add(repr(sorted(keys.items())))
        method.make_strategy(request.with_keys(**keys).keys)


def run_scenario(model=None, source=None, targets=None, config_file_list=None, config_dict=None, arms=None, seeds=None,
                 progress=None, verbose=False):
    """Every (seed, target, arm) of ``model``'s method, run by the method's runner; returns a list of row dicts.
    ``model`` None: the model of the config (a 'model' key), else of the default method's scenario."""
    request = Request(model, source, targets, config_file_list or (), config_dict)
    return request.method.runner.scenario(request.method, request, arms, seeds, progress=progress, verbose=verbose)


def checked_arms(method, request, arms=None):
    """The arms of a two-stage scenario (``arms`` or the method's), every key, domain and baseline checked before
    anything trains."""
    source, targets = request.require_source(), request.require_targets()
    request.check_domains([source], "source")
    request.check_domains(targets, "targets")
    arms = list(arms or method.arms)
    if not arms:
        raise TransferConfigError(f"arms: method {method.name!r} declares no arms; give --arms=\"[...]\"")
    for arm in arms:
        arm_label(method, arm)
    baselines = baseline_models(method)
    check_strategies(method, request, [method.strategy.arm_config(a) for a in arms if a not in baselines])
    for target in targets:
        for arm in arms:
            if arm in baselines:
                check_baseline(request, target, baselines[arm])
    return arms


def two_stage_rows(method, request, arms=None, seeds=None, progress=None, verbose=False):
    """Train every (seed, target, arm) of ``request`` with ``method``; returns a list of row dicts (one per run)."""
    model, source, targets = request.model, request.require_source(), request.require_targets()
    arms = checked_arms(method, request, arms)
    labels = {arm: arm_label(method, arm) for arm in arms}
    baselines = baseline_models(method)
    seeds = list(seeds or [request.seed])
    total = len(seeds) * len(targets) * len(arms)
    rows, done, start = [], 0, time.time()
    for seed in seeds:
        seeded = request.with_keys(seed=seed)  # the replicate: data_seed (when not given) and training seed
        t0 = time.time()
        if progress:
            progress(f"seed {seed}: source stage on {source!r} ...")
        pretrained = pretrain(seeded, verbose=verbose)
        if progress:
            shown = ", ".join(f"{k} {v}" for k, v in (pretrained.test_result or {}).items()) or "from checkpoint"
            progress(f"seed {seed}: source {source!r} trained in {time.time() - t0:.1f}s (test {shown})")
        for target in targets:
            for arm in arms:
                if arm in baselines:  # another model on the target alone
                    arm_request = seeded.with_keys(model=baselines[arm], transfer="none",
                                                   source_checkpoint=pretrained.model_file)
                    result = transfer(arm_request.for_target(target), verbose=verbose)
                else:
                    arm_request = seeded.with_keys(**method.strategy.arm_config(arm)).for_target(target)
                    result = transfer(arm_request, pretrained=pretrained, verbose=verbose)
                done += 1
                primary = str(result["config"]["valid_metric"]).lower()
                row = {
                    "seed": seed, "data_seed": result["data_seed"], "model": model, "target": target,
                    "arm": labels[arm], "kind": _kind(method, arm, baselines),
                    "metric": primary, "trainable": result["trainable"],
                    "mode": result["variant"], "relatedness": result["relatedness"],
                    "epochs": result["epochs_run"], "seconds": result["fit_seconds"],
                    "train_seconds": float(sum(result["epoch_seconds"]["train"])),
                    "valid_seconds": float(sum(result["epoch_seconds"]["valid"])),
                    "valid_curve": result["valid_curve"], "fingerprint": result["fingerprint"],
                    **{f"test_{k}": v for k, v in (result["test_result"] or {}).items()},
                    **{f"valid_{k}": v for k, v in (result["best_valid_result"] or {}).items()},
                    "test_per_user": result["test_per_user"], "test_users": result["test_users"],
                    "valid_per_user": result["valid_per_user"], "valid_users": result["valid_users"],
                }
                rows.append(row)
                if progress:
                    shown = "  ".join(f"{k} {v:.4f}" for k, v in (result["test_result"] or {}).items())
                    progress(
                        f"[{done}/{total}] seed {seed} target {target:<10} {row['arm']:<9} {shown}  "
                        f"epochs {row['epochs']:>3}  {row['seconds']:.1f}s  (elapsed {time.time() - start:.0f}s)"
                    )
    return rows


