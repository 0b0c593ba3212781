"""The two-stage runner (source -> strategy -> target) as a :class:`~recbole_transfer.pipeline.base.Runner`: what a
command, a scenario and a Ray Tune trial of a two-stage method run."""

import os

from ..errors import TransferConfigError
from ..config import get_model
from ..trainer import TransferTrainer, is_traditional
from .base import Runner, SearchTarget
from .scenario import checked_arms, two_stage_rows
from .two_stage import (builds_on_source, build_model, load_transfer_model, prepare_domain, pretrain, source_from_checkpoint,
                        transfer)


def evaluate_checkpoint(model_file, config_dict=None, details=False):
    """Test a checkpoint this package wrote, as stored (``config_dict``: keys to override, e.g. num_threads):
    (config, {metric: value}); ``details``: and a dict of the per-user values (``test_per_user``, ``test_users``) and
    the trainable share (``trainable``: [trainable parameters, all parameters])."""
    config, model, _dataset, _train, _valid, test = load_transfer_model(model_file, config_dict)
    trainer = TransferTrainer(config, model, stage="analysis")
    result = {k: float(v) for k, v in trainer.evaluate(test, load_best_model=False).items()}
    if not details:
        return config, result
    counts = [sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())]
    return config, result, {"test_per_user": trainer.last_per_user, "test_users": trainer.last_users, "trainable": counts}


class TwoStageRunner(Runner):
    """Source stage once, the method's strategy, then the target stage (:mod:`.two_stage`)."""

    time_attr = "epoch"

    def run(self, method, request, progress):
        result = transfer(request)
        variant = f" ({result['variant']})" if result["variant"] else ""
        lines = [f"transfer={result['transfer']}{variant}  test: {dict(result['test_result'])}"]
        if result["relatedness"] is not None:
            lines.append(f"KL relatedness R(source, target) = {result['relatedness']:.4f}")
        lines.append(f"model file: {result['model_file']}")
        return result, "\n".join(lines)

    parallel_units = True
    prepares_per_seed = True  # the source, trained once per seed

    def scenario(self, method, request, arms=None, seeds=None, progress=None, verbose=False, chosen=None):
        return two_stage_rows(method, request, arms, seeds, progress=progress, verbose=verbose)

    def scenario_arms(self, method, request, arms=None):
        return checked_arms(method, request, arms)

    def seed_keys(self, method, request):
        """The source trained once for the seed's units (each loads the checkpoint: the weights the sequential run
        transfers), unless the request gives one."""
        if request.keys["source_checkpoint"]:
            return {}
        return {"source_checkpoint": pretrain(request, verbose=False).model_file}

    # ----- Ray Tune -------------------------------------------------------------------------------
    def prepare_search(self, method, state, trials, emit):
        """Pretrain the source once (when a trial transfers, or the model is built on it): every trial loads it."""
        transfers = not all(method.is_baseline(t) for t in trials)
        if not (transfers or builds_on_source(state.model)):
            return
        if state.source_checkpoint and not os.path.isfile(state.source_checkpoint):
            state.source_checkpoint = None  # prepared by an earlier try, and gone since: pretrain again
        request = state.request(checkpoint_dir=os.path.join(state.run_dir, "source"))
        if not request.source and not request.keys["source_checkpoint"]:
            raise TransferConfigError("source: the search space transfers but no source is given (--source=<name>)")
        pretrained = pretrain(request, verbose=False)
        if state.source_checkpoint != pretrained.model_file:
            state.source_checkpoint = pretrained.model_file
            emit(f"source {state.source!r} pretrained once (test {dict(pretrained.test_result)}); every trial loads "
                 f"{pretrained.model_file}")

    def check_search(self, method, request, trials):
        """Every distinct trial's strategy, checked on the target model and the source (layer names, shapes, id
        spaces) before any trial starts: a bad space fails in seconds."""
        data = prepare_domain(request.config(request.target, key="target"), key="target")
        if request.keys["source_checkpoint"]:
            pretrained, probe, checked = source_from_checkpoint(request.keys["source_checkpoint"]), build_model(data), set()
            for params in trials:
                strategy = method.make_strategy(request.with_keys(**params).keys)
                if strategy is None or strategy.is_identity or method.describe(params) in checked:
                    continue
                checked.add(method.describe(params))
                strategy.check(probe, pretrained, data)
        config = data.config
        max_t = 1 if is_traditional(get_model(config["model"])) else config["epochs"]  # built once: one epoch
        return SearchTarget(config, data.fingerprint(), int(data.valid_data._dataset.inter_num), max_t)

    def trial(self, method, request, report):
        keys = request.keys
        pretrained = source_from_checkpoint(keys["source_checkpoint"]) if keys["source_checkpoint"] else None

        def on_epoch(epoch, trainer, valid_result, last):
            metrics = {f"valid_{k}": float(v) for k, v in (valid_result or {}).items()}
            report({**metrics, "epoch": epoch, "recbole_done": bool(last), "model_file": trainer.saved_model_file,
                    "fingerprint": trainer.fingerprint})

        transfer(request, pretrained=pretrained, verbose=True, on_epoch=on_epoch, evaluate_test=False)

    def finish_search(self, method, state, target, best, metric):
        """The winner's test metrics, once, from the checkpoint of its best epoch; the keys that reproduce it."""
        _config, test, details = evaluate_checkpoint(best["model_file"], {"num_threads": state.num_threads}, details=True)
        keys = {"epochs": best["epochs"]} if best["stopped_early"] else {}  # the same epochs: the same best epoch
        if state.source_checkpoint and (not method.is_baseline(best["config"]) or builds_on_source(state.model)):
            keys["source_checkpoint"] = state.source_checkpoint
        return {"test_result": test, "keys": keys, **details}
