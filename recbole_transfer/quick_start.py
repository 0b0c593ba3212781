"""The transfer pipeline: source stage, transfer strategy, target stage, evaluation.

``run_transfer`` is the plugin's ``run_recbole``: one model, one source, one target. It follows
RecBole's own sequence for each stage (Config -> seed -> dataset -> dataloaders -> seed -> model ->
trainer -> fit -> evaluate), with one difference: the split and the evaluation candidates are the
domain's :class:`~recbole_transfer.data.protocol.Protocol`, fixed by ``data_seed`` (default: ``seed``),
so arms and trials that differ only in their training seed are scored on the same data.
``pretrain_source`` runs the source stage once so that many targets and arms reuse it.
``load_transfer_model`` reloads any checkpoint this package wrote.
"""

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np
from recbole.data import create_dataset
from recbole.utils import init_logger, init_seed

from .config import TransferConfig, get_model, recbole_errors
from .data import Protocol, check_domain, check_enough_items, data_seed_of, id_tokens, kl_relatedness, resolve_domain, user_counts
from .errors import TransferConfigError
from .transfer.patches import backbone_of, check_backbone
from .trainer import TransferTrainer, load_checkpoint, load_model_state
from .transfer import PatchTransfer, make_strategy
from .utils import set_threads

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


@dataclass
class PretrainedSource:
    """A model trained on the source domain, shared by every target and arm."""

    state_dict: dict
    user_counts: np.ndarray
    model_file: str
    dataset: str
    valid_result: dict = field(default_factory=dict)
    test_result: dict = field(default_factory=dict)
    id_tokens: dict = field(default_factory=dict)  # {token field: tokens}: id spaces, context alignment


def domain_config(model, name, config_file_list=None, config_dict=None, key="dataset", overrides=None):
    """A TransferConfig for a dataset or a derived domain (derived domains are written on first use)."""
    config_dict = dict(config_dict or {})
    probe = TransferConfig(model, name, config_file_list, config_dict)
    if name is None:
        raise TransferConfigError(f"{key}: no dataset or domain given")
    data_path = config_dict.get("data_path", probe.external_config_dict.get("data_path", "dataset/"))
    dataset, path, extra = resolve_domain(
        name, config_dict, data_path, probe["domain_cache_dir"], probe["domains"], key
    )
    merged = {**extra, **config_dict, **(overrides or {}), "data_path": os.path.abspath(path)}
    return TransferConfig(model, dataset, config_file_list, merged)


def check_domains(probe, names, key="target", config_dict=None):
    """Fail in seconds, before any training, when a dataset or domain name does not exist (with the closest
    declared domain), or a declared domain's spec is bad. ``probe``: a TransferConfig of the run."""
    data_path = dict(config_dict or {}).get("data_path", probe.external_config_dict.get("data_path", "dataset/"))
    for name in names:
        check_domain(name, data_path, probe["domains"], key)


def prepare_domain(config, key="dataset"):
    """Seed, build the dataset, its protocol (split and evaluation candidates, fixed by ``data_seed``) and
    RecBole's dataloaders on it."""
    set_threads(config["num_threads"])
    init_seed(config["seed"], config["reproducibility"])
    with recbole_errors(config, key):
        dataset = create_dataset(config)
        check_enough_items(dataset, config, key)
        protocol = Protocol.of(config, dataset)
        train_data, valid_data, test_data = protocol.dataloaders(config, dataset)
    logger.info("protocol %s: data_seed %d, train %d / valid %d / test %d interactions", protocol.key[:12],
                data_seed_of(config), len(protocol.rows["train"]), len(protocol.rows["valid"]), len(protocol.rows["test"]))
    return DomainData(config, dataset, train_data, valid_data, test_data, protocol)


def build_model(data):
    """Seed as RecBole does, then instantiate the configured model on the domain's training data."""
    config = data.config
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    return get_model(config["model"])(config, data.train_data._dataset).to(config["device"])


def train_domain(
    data, stage, strategy=None, source_state=None, saved=True, verbose=True, extra_state=None, before_fit=None,
    on_epoch=None, evaluate_test=True,
):
    """Build the model, apply the strategy, then train and test it with a TransferTrainer.

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
    if strategy is not None and not strategy.is_identity:
        strategy.apply(model, source_state)
        report = strategy.report()
        logger.info("\n%s", report)
    trainer = TransferTrainer(config, model, stage=stage)
    trainer.fingerprint = data.fingerprint()  # what this run trains and is scored on (equal across arms and trials)
    trainer.extra_state = {**dict(extra_state or {}), "fingerprint": trainer.fingerprint}
    if strategy is not None and not strategy.is_identity:  # e.g. patches save a delta over their source
        trainer.state_keys, extra = strategy.checkpoint_plan(model, config)
        trainer.extra_state.update(extra)
        trainer.before_epoch = strategy.before_epoch  # e.g. annealing unfreezes after a warm-up
    start = time.time()
    curve = []  # (epoch, seconds since fit start, valid score): for time-to-quality measurements
    best = {"valid_per_user": None, "valid_users": None}

    def record(epoch_idx, valid_score):
        curve.append((epoch_idx, time.time() - start, float(valid_score)))
        if trainer.cur_step == 0:  # RecBole's early stopping just took this epoch as the best
            best.update(valid_per_user=trainer.last_per_user, valid_users=trainer.last_users)
        if on_epoch is not None:
            last = epoch_idx + trainer.eval_step >= trainer.epochs or trainer.cur_step > trainer.stopping_step
            on_epoch(epoch_idx + 1, trainer, trainer.last_valid_result, last)

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
        "trainable": strategy.trainable_counts if strategy is not None else None,
        "valid_per_user": best["valid_per_user"],
        "valid_users": best["valid_users"],
        "test_per_user": test_per_user,
        "test_users": test_users,
        "epoch_seconds": trainer.epoch_seconds,
    }


def source_from_checkpoint(path):
    """A :class:`PretrainedSource` read from a source checkpoint, as stored (no dataset is built)."""
    checkpoint = load_checkpoint(path)
    return PretrainedSource(
        checkpoint["state_dict"], np.asarray(checkpoint.get("user_counts") or [], dtype=np.int64), str(path),
        checkpoint["config"].get("dataset"), id_tokens=checkpoint.get("id_tokens") or {},
    )


def pretrain_source(model, source, config_file_list=None, config_dict=None, verbose=True, before_fit=None):
    """Source stage: train on the source domain once, or load ``source_checkpoint`` when given.

    The source model is ``source_model`` when set (PeterRec pretrains NextItNet), else ``model``.

    ``before_fit(source_state_dict, source_id_tokens)`` runs before training, or after loading the
    checkpoint (e.g. checks shapes and id spaces against the target).
    """
    probe = domain_config(model, source, config_file_list, config_dict, key="source")
    model = probe["source_model"] or model
    if model != probe["model"]:
        probe = domain_config(model, source, config_file_list, config_dict, key="source")
    checkpoint_path = probe["source_checkpoint"]
    if checkpoint_path:
        pretrained = source_from_checkpoint(checkpoint_path)
        if pretrained.user_counts.size == 0 or not pretrained.id_tokens:  # written by a plain run: recompute
            dataset = create_dataset(probe)
            pretrained.user_counts, pretrained.id_tokens = user_counts(dataset), id_tokens(dataset)
        pretrained.dataset = probe["dataset"]
        if before_fit is not None:
            before_fit(pretrained.state_dict, pretrained.id_tokens)
        logger.info("source stage skipped: using %s", checkpoint_path)
        return pretrained
    overrides = {"epochs": probe["source_epochs"]} if probe["source_epochs"] else {}
    # a run's keep_fraction makes sparse TARGETS; the source keeps what its own domain declares
    overrides["keep_fraction"] = ((probe["domains"] or {}).get(source) or {}).get("keep_fraction", 1.0)
    config = domain_config(model, source, config_file_list, config_dict, key="source", overrides=overrides)
    logger.info("==== stage: source (%s on %s) ====", config["model"], config["dataset"])
    data = prepare_domain(config, key="source")
    counts, ids = data.user_counts(), id_tokens(data.dataset)
    out = train_domain(
        data, "source", verbose=verbose, extra_state={"user_counts": counts.tolist(), "id_tokens": ids},
        before_fit=(lambda source_model: before_fit(source_model.state_dict(), ids)) if before_fit else None,
    )
    state = {k: v.detach().clone() for k, v in out["model"].state_dict().items()}
    return PretrainedSource(
        state, counts, out["model_file"], config["dataset"], out["best_valid_result"] or {}, out["test_result"] or {},
        ids,
    )


def run_transfer(
    model=None, source=None, target=None, config_file_list=None, config_dict=None, saved=True,
    pretrained=None, verbose=True, log=True, on_epoch=None, evaluate_test=True,
):
    """Train on ``source`` (or reuse ``pretrained``), transfer, train and test on ``target``.

    ``on_epoch`` and ``evaluate_test`` are passed to :func:`train_domain` (used by the tuner).
    Returns a dict with RecBole's keys (best_valid_score, best_valid_result, test_result) plus
    transfer, relatedness, model_file, epochs_run, fit_seconds and the source results.
    """
    target_config = domain_config(model, target, config_file_list, config_dict, key="target")
    if log:
        init_logger(target_config)
    source = source or target_config["source"]  # e.g. a scenario file's source
    strategy = make_strategy(target_config)
    if isinstance(strategy, PatchTransfer):
        return _run_patch_transfer(model, source, target, config_file_list, config_dict, target_config, strategy,
                                   saved, pretrained, verbose, on_epoch, evaluate_test)
    if strategy.loads_source and pretrained is None and source is None:
        raise TransferConfigError(
            f"source: transfer={target_config['transfer']!r} needs a source domain (--source=<dataset>)"
        )
    data = prepare_domain(target_config, key="target")
    target_check = None
    if strategy.loads_source:
        target_ids = id_tokens(data.dataset)
        if pretrained is None:
            # Check layer names on the target model, shapes and id spaces against the untrained source
            # model before the source stage spends any time: bad input fails fast and changes nothing.
            probe = build_model(data)
            strategy.check(probe)
            pretrained = pretrain_source(
                model, source, config_file_list, config_dict, verbose=verbose,
                before_fit=lambda source_state, source_ids: strategy.check(probe, source_state, source_ids, target_ids),
            )
        else:  # a shared source: check its id spaces on the target model before it trains
            target_check = lambda target_model: strategy.check(  # noqa: E731
                target_model, pretrained.state_dict, pretrained.id_tokens or None, target_ids
            )
    logger.info("==== stage: target (%s on %s, transfer=%s) ====", target_config["model"], target_config["dataset"], strategy.label)
    out = train_domain(
        data, "target", strategy=strategy, source_state=pretrained.state_dict if pretrained else None,
        saved=saved, verbose=verbose, before_fit=target_check, on_epoch=on_epoch, evaluate_test=evaluate_test,
    )
    relatedness = None
    if pretrained is not None:
        relatedness = kl_relatedness(pretrained.user_counts, data.user_counts())
    return _result(target_config, strategy, data, out, pretrained, relatedness)


def _run_patch_transfer(model, source, target, config_file_list, config_dict, target_config, strategy, saved,
                        pretrained, verbose, on_epoch, evaluate_test):
    """PeterRec: pretrain (or load) the source network, then build the target model on its checkpoint."""
    checkpoint_path = target_config["source_checkpoint"]
    if pretrained is None:
        spec = backbone_of(target_config["source_model"], target_config["backbone_modules"])
        check = lambda source_state, _ids=None: check_backbone(spec, source_state, target_config["source_model"])  # noqa: E731
        if checkpoint_path:  # the checkpoint alone describes the source (its name need not resolve here)
            pretrained = source_from_checkpoint(checkpoint_path)
            check(pretrained.state_dict)
        elif source is None:
            raise TransferConfigError(
                f"source: transfer={strategy.method!r} needs a pretrained network: --source=<domain> "
                f"(pretrains {target_config['source_model']} on it) or source_checkpoint=<file>"
            )
        else:
            pretrained = pretrain_source(model, source, config_file_list, config_dict, verbose=verbose, before_fit=check)
    config_dict = {**dict(config_dict or {}), "source_checkpoint": os.path.abspath(pretrained.model_file)}
    target_config = domain_config(model, target, config_file_list, config_dict, key="target")
    data = prepare_domain(target_config, key="target")
    logger.info("==== stage: target (%s on %s, transfer=%s) ====", target_config["model"], target_config["dataset"], strategy.label)
    out = train_domain(
        data, "target", strategy=strategy, source_state=pretrained.state_dict, saved=saved, verbose=verbose,
        on_epoch=on_epoch, evaluate_test=evaluate_test,
    )
    return _result(target_config, strategy, data, out, pretrained, None)


def _result(target_config, strategy, data, out, pretrained, relatedness):
    logger.info("best valid: %s", out["best_valid_result"])
    logger.info("test result: %s", out["test_result"])
    return {
        "best_valid_score": out["best_valid_score"],
        "valid_score_bigger": target_config["valid_metric_bigger"],
        "best_valid_result": out["best_valid_result"],
        "test_result": out["test_result"],
        "transfer": strategy.label,
        "transfer_mode": target_config["transfer_mode"],
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
    file that is not ours or not weights-only.
    """
    checkpoint = load_checkpoint(model_file)
    config = TransferConfig.from_checkpoint(checkpoint, config_dict)
    data = prepare_domain(config)
    init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
    model = get_model(config["model"])(config, data.train_data._dataset).to(config["device"])
    if checkpoint.get("stage") != "source":  # a source model is what it is; a target's strategy may graft
        make_strategy(config).prepare_reload(model, checkpoint)  # e.g. patches over their source, adapters
    load_model_state(model, checkpoint)
    for name, param in model.named_parameters():
        param.requires_grad_(name in set(checkpoint.get("trainable", [])))
    model.eval()
    return config, model, data.dataset, data.train_data, data.valid_data, data.test_data
