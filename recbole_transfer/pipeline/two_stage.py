"""The two-stage runner: source stage, transfer strategy, target stage, evaluation.

``run_transfer`` is the plugin's ``run_recbole``: one model, one source, one target. It follows
RecBole's own sequence for each stage (Config -> seed -> dataset -> dataloaders -> seed -> model ->
trainer -> fit -> evaluate), with one difference: the split and the evaluation candidates are the
domain's :class:`~recbole_transfer.data.protocol.Protocol`, fixed by ``data_seed`` (default: ``seed``),
so arms and trials that differ only in their training seed are scored on the same data.
``pretrain_source`` runs the source stage once so that many targets and arms reuse it.
``load_transfer_model`` reloads any checkpoint this package wrote.

The strategy is the model's method's (:mod:`recbole_transfer.registry`); this module never names a method.
A target model that reads the source checkpoint when it is built (class attribute ``builds_on_source``)
is built after the source stage, on its checkpoint (``source_checkpoint``); the strategy then checks the
source alone (``check(None, source, None)``) before the source stage spends time.
"""

import logging
import os
import time
from dataclasses import dataclass

import numpy as np
from recbole.data import create_dataset
from recbole.utils import init_seed

from .. import registry
from ..config import TransferConfig, get_model, recbole_errors
from ..data import Protocol, check_enough_items, id_tokens, kl_relatedness, user_counts
from ..keys import data_seed_of
from ..logs import heartbeat
from ..request import Request
from ..errors import TransferCheckpointError, TransferConfigError
from ..trainer import TransferTrainer, load_checkpoint, load_model_state
from ..transfer import SourceModel
from ..utils import set_threads

logger = logging.getLogger(__name__)


@dataclass
class DomainData:
    """A domain ready for training: its config, dataset, protocol and RecBole dataloaders."""

    config: TransferConfig
    dataset: object
    train_data: object
    valid_data: object
    test_data: object
    protocol: Protocol = None

    def fingerprint(self):
        """Hash of the training interactions and every evaluation batch (equal = same data, same candidates)."""
        return Protocol.fingerprint(self.train_data, self.valid_data, self.test_data)

    def user_counts(self):
        """Interactions per user of the domain as trained and evaluated (training thinned, valid, test)."""
        return user_counts(self.train_data._dataset, self.valid_data._dataset, self.test_data._dataset)

    def id_tokens(self):
        """{token field: tokens} of the domain's id spaces (what a strategy aligns or compares)."""
        return id_tokens(self.dataset)


def builds_on_source(model_name):
    """True for a model that reads ``source_checkpoint`` when it is built (it cannot exist before the source)."""
    return bool(getattr(get_model(model_name), "builds_on_source", False))


def read_dataset(config):
    """RecBole's ``create_dataset(config)``, saying every 10 s that it still runs (it prints nothing as it goes)."""
    with heartbeat(f"set-up {config['dataset']}: loading and filtering", logger):
        return create_dataset(config)


def load_dataset(config, key="dataset"):
    """RecBole's dataset of ``config`` (loaded and filtered as RecBole does), with a set-up line: counts and seconds."""
    set_threads(config["num_threads"])
    start = time.time()
    logger.info("set-up %s: loading and filtering (RecBole) ...", config["dataset"])
    with recbole_errors(config, key):
        dataset = read_dataset(config)
        check_enough_items(dataset, config, key)
    logger.info("set-up %s: loaded and filtered, %d interactions, %d users, %d items (%.1f s)", config["dataset"],
                dataset.inter_num, dataset.user_num - 1, dataset.item_num - 1, time.time() - start)
    return dataset


def domain_data(config, dataset, key="dataset", user_parts=None):
    """The :class:`DomainData` of a loaded dataset: its protocol (split and candidates, ``user_parts``: see
    :meth:`Protocol.of`) and RecBole's dataloaders on it, each phase with a set-up line (what it did, seconds)."""
    with recbole_errors(config, key):
        start = time.time()
        with heartbeat(f"set-up {config['dataset']}: split", logger):
            protocol = Protocol.of(config, dataset, user_parts=user_parts)
        logger.info("set-up %s: split %s (%.1f s)", config["dataset"], "read from the protocol cache" if protocol.from_cache
                    else f"drawn under data_seed {data_seed_of(config)}", time.time() - start)
        start = time.time()
        with heartbeat(f"set-up {config['dataset']}: dataloaders and evaluation candidates", logger):
            loaders = protocol.dataloaders(config, dataset)
        logger.info("set-up %s: dataloaders and evaluation candidates (%s), %.1f s", config["dataset"],
                    dict(config["eval_args"]).get("mode"), time.time() - start)
    logger.info("protocol %s: data_seed %d, eval_args %s; train %d / valid %d / test %d interactions", protocol.key[:12],
                data_seed_of(config), dict(config["eval_args"]), len(protocol.rows["train"]), len(protocol.rows["valid"]),
                len(protocol.rows["test"]))
    return DomainData(config, dataset, *loaders, protocol)


def prepare_domain(config, key="dataset"):
    """Seed, build the dataset, its protocol (split and evaluation candidates, fixed by ``data_seed``) and
    RecBole's dataloaders on it."""
    init_seed(config["seed"], config["reproducibility"])
    return domain_data(config, load_dataset(config, key), key)


def build_model(data):
    """Seed as RecBole does, then instantiate the configured model on the domain's training data."""
    config = data.config
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    return instantiate(get_model(config["model"]), config["model"], config, data.train_data._dataset)


def instantiate(cls, name, config, *args):
    """``cls(config, *args)`` on the configured device, saying every 10 s that it is still being built (an EASE-like
    model fits in its constructor): every model build of the package goes through here."""
    with heartbeat(f"set-up {config['dataset']}: building {name}", logger):
        return cls(config, *args).to(config["device"])


def train_domain(
    data, stage, strategy=None, source=None, saved=True, verbose=True, extra_state=None, before_fit=None,
    on_epoch=None, evaluate_test=True,
):
    """Build the model, apply the strategy (with ``source``, a :class:`SourceModel`), then train and test it with
    a TransferTrainer, which calls the strategy's hooks.

    ``before_fit(model)`` runs after the model exists and before any training (used to check a
    transfer against the source model's shapes before spending time on the source).
    ``on_epoch(epoch, trainer, valid_result, last)`` runs after each validation (epoch counts from 1;
    ``last`` is True when RecBole's loop ends after it: max epochs or early stopping).
    ``evaluate_test=False`` never touches the test split (hyper-parameter search).
    """
    config = data.config
    model = build_model(data)
    if before_fit is not None:
        before_fit(model)
    report = None
    applied = strategy is not None and not strategy.is_identity
    if applied:
        report = strategy.apply(model, source, data)
        logger.info("\n%s", report)
    trainer = TransferTrainer(config, model, stage=stage, strategy=strategy if applied else None)
    start = time.time()
    trainer.fingerprint = data.fingerprint()  # what this run trains and is scored on (equal across arms and trials)
    logger.info("set-up %s: data fingerprint %s (%.1f s)", config["dataset"], trainer.fingerprint, time.time() - start)
    trainer.extra_state.update(dict(extra_state or {}), fingerprint=trainer.fingerprint)
    start = time.time()
    curve = []  # (epoch, seconds since fit start, valid score): for time-to-quality measurements
    best = {"valid_per_user": None, "valid_users": None}

    def record(epoch_idx, valid_score):
        curve.append((epoch_idx, time.time() - start, float(valid_score)))
        if trainer.cur_step == 0:  # RecBole's early stopping just took this epoch as the best
            best.update(valid_per_user=trainer.last_per_user, valid_users=trainer.last_users)
        if on_epoch is not None:
            on_epoch(epoch_idx + 1, trainer, trainer.last_valid_result, trainer.is_last_validation(epoch_idx))

    best_valid_score, best_valid_result = trainer.fit(
        data.train_data, data.valid_data, saved=saved, verbose=verbose, show_progress=config["show_progress"],
        callback_fn=record,
    )
    fit_seconds = time.time() - start
    test_result = test_per_user = test_users = None
    if evaluate_test:
        test_result = trainer.evaluate(data.test_data, load_best_model=saved, show_progress=config["show_progress"])
        test_per_user, test_users = trainer.last_per_user, trainer.last_users
    return {
        "model": model,
        "trainer": trainer,
        "best_valid_score": best_valid_score,
        "best_valid_result": best_valid_result,
        "test_result": test_result,
        "model_file": trainer.saved_model_file if saved else None,
        "epochs_run": len(trainer.train_loss_dict),
        "fit_seconds": fit_seconds,
        "valid_curve": curve,
        "transfer_report": report,
        "trainable": report.counts if report is not None else None,
        "valid_per_user": best["valid_per_user"],
        "valid_users": best["valid_users"],
        "test_per_user": test_per_user,
        "test_users": test_users,
        "epoch_seconds": trainer.epoch_seconds,
    }


def source_from_checkpoint(path):
    """A :class:`SourceModel` read from a source checkpoint, as stored (no dataset is built)."""
    checkpoint = load_checkpoint(path)
    return SourceModel(
        checkpoint["state_dict"], checkpoint.get("id_tokens") or {},
        np.asarray(checkpoint.get("user_counts") or [], dtype=np.int64), str(path), checkpoint["config"].get("dataset"),
    )


def pretrain_source(model, source, config_file_list=None, config_dict=None, verbose=True, before_fit=None):
    """Source stage: train ``model`` on ``source`` once, or load ``source_checkpoint`` when given; see :func:`pretrain`."""
    return pretrain(Request(model, source, None, config_file_list, config_dict), verbose, before_fit)


def source_request(request, model):
    """The request of the source stage: ``model`` (the source model) without the keys that only the request's own
    method reads (a transfer's keys, e.g. a patch's width: the source network is trained alone, and a RecBole
    model declared by no method would otherwise be warned about keys that are not the user's mistake)."""
    from ..keys import method_keys, recbole_keys

    own, theirs = registry.method_of(request.model), registry.method_of(model)
    source = request.with_keys(model=model)
    if own is theirs:
        return source
    foreign = method_keys(own) - method_keys(theirs) - recbole_keys()  # a key RecBole reads is never dropped
    if not foreign & set(source.config_dict):
        return source
    return Request(model, source.source, source.targets, source.config_files,
                   {k: v for k, v in source.config_dict.items() if k not in foreign})


def pretrain(request, verbose=True, before_fit=None):
    """The source stage of ``request``: train on its source once, or load its ``source_checkpoint``.

    The source model is ``source_model`` when set (a method's model file may set it), else the request's model.
    ``before_fit(source)`` (a :class:`SourceModel`) runs before training, or after loading the checkpoint (e.g.
    the strategy checks shapes and id spaces against the target).
    """
    keys, source = request.keys, request.source
    model = keys["source_model"] or request.model
    if keys["source_checkpoint"]:  # the checkpoint alone describes the source; its dataset is read only for a
        pretrained = source_from_checkpoint(keys["source_checkpoint"])  # plain run's file (no counts, no ids)
        if source is not None and (pretrained.user_counts.size == 0 or not pretrained.id_tokens):
            dataset = read_dataset(source_request(request, model).config(source, key="source"))
            pretrained.user_counts, pretrained.id_tokens = user_counts(dataset), id_tokens(dataset)
        pretrained.dataset = source or pretrained.dataset
        if before_fit is not None:
            before_fit(pretrained)
        logger.info("source stage skipped: using %s", keys["source_checkpoint"])
        return pretrained
    if source is None:
        raise TransferConfigError("source: no source domain given (--source=<name>, a 'source:' key or source_checkpoint=<file>)")
    overrides = {"epochs": keys["source_epochs"]} if keys["source_epochs"] else {}
    # a run's keep_fraction makes sparse TARGETS; the source keeps what its own domain declares
    overrides["keep_fraction"] = ((keys["domains"] or {}).get(source) or {}).get("keep_fraction", 1.0)
    config = source_request(request, model).config(source, key="source", overrides=overrides)
    logger.info("==== stage: source (%s on %s) ====", config["model"], config["dataset"])
    data = prepare_domain(config, key="source")
    counts, ids = data.user_counts(), id_tokens(data.dataset)
    out = train_domain(
        data, "source", verbose=verbose, extra_state={"user_counts": counts.tolist(), "id_tokens": ids},
        before_fit=(lambda source_model: before_fit(SourceModel(source_model.state_dict(), ids))) if before_fit else None,
    )
    state = {k: v.detach().clone() for k, v in out["model"].state_dict().items()}
    return SourceModel(state, ids, counts, out["model_file"], config["dataset"], out["best_valid_result"] or {},
                       out["test_result"] or {})


def run_transfer(
    model=None, source=None, target=None, config_file_list=None, config_dict=None, saved=True,
    pretrained=None, verbose=True, on_epoch=None, evaluate_test=True,
):
    """Train on ``source`` (or reuse ``pretrained``, a :class:`SourceModel`), transfer with the model's method's
    strategy, train and test on ``target``: the plugin's ``run_recbole``; see :func:`transfer`."""
    request = Request(model, source, [target] if target is not None else None, config_file_list, config_dict)
    return transfer(request, pretrained, saved, verbose, on_epoch, evaluate_test)


def transfer(request, pretrained=None, saved=True, verbose=True, on_epoch=None, evaluate_test=True):
    """The run of ``request`` on its (first) target: its source stage (or ``pretrained``), the strategy, the target.

    ``on_epoch`` and ``evaluate_test`` are passed to :func:`train_domain` (used by the tuner).
    Returns a dict with RecBole's keys (best_valid_score, best_valid_result, test_result) plus
    transfer, relatedness, model_file, epochs_run, fit_seconds and the source results.
    """
    target = request.target
    target_config = request.config(target, key="target")
    strategy = request.method.make_strategy(target_config)
    needs_source = strategy is not None and strategy.loads_source
    on_source = builds_on_source(request.model)
    if (needs_source or on_source) and pretrained is None and request.source is None and not request.keys["source_checkpoint"]:
        raise TransferConfigError(
            f"source: transfer={target_config['transfer']!r} of model {request.model} needs a source domain "
            f"(--source=<dataset>) or source_checkpoint=<file>"
        )
    data = None if on_source else prepare_domain(target_config, key="target")
    target_check = None
    if needs_source or on_source:
        if pretrained is None:
            # Check what the target model tells (layer names), then shapes and id spaces against the untrained
            # source model, before the source stage spends any time: bad input fails fast and changes nothing.
            probe = None if on_source else build_model(data)
            if strategy is not None:
                strategy.check(probe, None, None if probe is None else data)
            check = (lambda src: strategy.check(probe, src, data)) if strategy is not None else None
            pretrained = pretrain(request, verbose=verbose, before_fit=check)
        elif strategy is not None:  # a shared source: check it on the target model before it trains
            target_check = lambda target_model: strategy.check(target_model, pretrained, data)  # noqa: E731
    if on_source:  # the target model is built on the source checkpoint
        target_config = request.with_keys(source_checkpoint=os.path.abspath(pretrained.model_file)).config(target, key="target")
        data = prepare_domain(target_config, key="target")
    label = strategy.label if strategy is not None else "-"
    logger.info("==== stage: target (%s on %s, transfer=%s) ====", target_config["model"], target_config["dataset"], label)
    out = train_domain(
        data, "target", strategy=strategy, source=pretrained, saved=saved, verbose=verbose, before_fit=target_check,
        on_epoch=on_epoch, evaluate_test=evaluate_test,
    )
    relatedness = None
    if pretrained is not None and pretrained.user_counts is not None and len(pretrained.user_counts) and not on_source:
        relatedness = kl_relatedness(pretrained.user_counts, data.user_counts())
    return _result(target_config, strategy, data, out, pretrained, relatedness)


def _result(target_config, strategy, data, out, pretrained, relatedness):
    logger.info("best valid: %s", out["best_valid_result"])
    logger.info("test result: %s", out["test_result"])
    return {
        "best_valid_score": out["best_valid_score"],
        "valid_score_bigger": target_config["valid_metric_bigger"],
        "best_valid_result": out["best_valid_result"],
        "test_result": out["test_result"],
        "transfer": strategy.label if strategy is not None else None,
        "variant": strategy.variant if strategy is not None else None,
        "transfer_report": out["transfer_report"],
        "relatedness": relatedness,
        "model_file": out["model_file"],
        "epochs_run": out["epochs_run"],
        "fit_seconds": out["fit_seconds"],
        "valid_curve": out["valid_curve"],
        "source_model_file": pretrained.model_file if pretrained else None,
        "source_test_result": pretrained.test_result if pretrained else None,
        "config": target_config,
        "data": data,
        "trained_model": out["model"],
        "trainer": out["trainer"],
        "trainable": out["trainable"],
        "valid_per_user": out["valid_per_user"],
        "valid_users": out["valid_users"],
        "test_per_user": out["test_per_user"],
        "test_users": out["test_users"],
        "epoch_seconds": out["epoch_seconds"],
        "data_seed": data_seed_of(target_config),
        "fingerprint": out["trainer"].fingerprint,
    }


def load_transfer_model(model_file, config_dict=None):
    """Reload a checkpoint written by recbole_transfer, like RecBole's ``load_data_and_model``.

    Returns (config, model, dataset, train_data, valid_data, test_data); the model is in eval mode.
    ``config_dict`` may override keys (e.g. ``num_threads``). Raises TransferCheckpointError for a
    file that is not ours or not weights-only, and for data that is not the data it was trained and validated on
    (its stored fingerprint: another data_seed, split or protocol, e.g. a checkpoint of a version whose protocol
    split otherwise): its test rows could be rows it trained on.
    """
    checkpoint = load_checkpoint(model_file)
    config = TransferConfig.from_checkpoint(checkpoint, config_dict)
    data = prepare_domain(config)
    stored = checkpoint.get("fingerprint")
    if stored and stored != data.fingerprint():
        raise TransferCheckpointError(
            f"{model_file!r} was trained and validated on data {stored}, but its keys give {data.fingerprint()} here "
            "(another data_seed or split, or a checkpoint written before the protocol changed): its test rows may be "
            "rows it trained on. Evaluate it with its own keys and the version that wrote it, or retrain it"
        )
    model = build_model(data)
    # a source checkpoint had no strategy applied (its config may name the target's transfer)
    strategy = registry.method_of(config["model"]).make_strategy(config) if checkpoint.get("stage") != "source" else None
    if strategy is not None:  # a target's strategy may graft modules
        strategy.prepare_reload(model, checkpoint)  # e.g. modules it grafted
    load_model_state(model, checkpoint)
    for name, param in model.named_parameters():
        param.requires_grad_(name in set(checkpoint.get("trainable", [])))
    model.eval()
    return config, model, data.dataset, data.train_data, data.valid_data, data.test_data
