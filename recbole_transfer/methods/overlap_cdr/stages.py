"""Stage schedules: a model trained in stages, each with its own data, validation and trainable modules.

A staged model declares ``stages = {name: Stage(...)}`` and ``enter_stage(name, domain)`` (train only the stage's
modules from now on; score ``domain``), may declare ``skips(name) -> reason or None`` (a stage that cannot change
any evaluated score is skipped: RecBole's early stopping takes an equal validation score as progress, so such a
stage would run all its epochs), and may draw extra batches inside ``calculate_loss`` from ``model.feeds``
(``feeds['source']``: the source's training batches, epoch after epoch). ``stages: [name:epochs, ...]`` (or a name
alone: at most ``epochs`` epochs) is its schedule: :func:`train_stages` runs each stage with a fresh
:class:`~recbole_transfer.trainer.TransferTrainer` (a fresh optimizer over exactly the stage's trainable
parameters; RecBole's loop and early stopping on the stage's validation; the stage's best epoch reloaded before the
next stage) on a :class:`~recbole_transfer.methods.overlap_cdr.pair.DomainPair`, and returns the stage report.
"""

import logging
import time
from dataclasses import dataclass

from recbole.utils import calculate_valid_score

from ...errors import TransferConfigError
from ...report import markdown
from ...trainer import TransferTrainer

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Stage:
    """One stage of a model's schedule.

    train: 'target' (the target's training rows), 'source' (the source's), 'overlap' (the target training rows of
        users with a source history) or 'users' (batches of users with a source history and target training rows).
    valid: 'target', 'source', or 'target_warm' (the target, unless the protocol is cold-start: then the target's
        validation users have no target vector this stage trains, and the stage runs its epochs unvalidated).
    modules: the attributes whose parameters train in this stage (everything else is frozen).
    about: one line for the stage report.
    feeds: what ``model.feeds['source']`` draws in this stage: 'source' (the source's training rows) or
        'source_overlap' (those of users who keep target training rows); see ``DomainPair.source_feed``.
    """

    train: str
    valid: str
    modules: tuple
    about: str
    feeds: str = "source"


def parse_stages(model_class, value, epochs=None):
    """[(stage, epochs), ...] from ``stages: [name:epochs, ...]`` (a list, or the same as one string); a name alone
    runs at most ``epochs`` (the ``epochs`` key) epochs."""
    if isinstance(value, str):
        value = [v for v in value.strip().strip("[]").replace(" ", "").split(",") if v]
    known, default = model_class.stages, epochs
    if value is None:
        value = []
    if not isinstance(value, (list, tuple)):
        raise TransferConfigError(f"stages={value!r}: expected a list such as [{', '.join(f'{s}:100' for s in known)}]")
    schedule = []
    for entry in value:
        name, _, epochs = str(entry).partition(":")
        if name not in known:
            raise TransferConfigError(
                f"stages: unknown stage {name!r} of {model_class.__name__}; its stages are "
                f"{', '.join(known) or 'none (nothing is trained)'}"
            )
        if not epochs.strip() and isinstance(default, int) and not isinstance(default, bool) and default >= 1:
            epochs = str(default)
        if not epochs.strip().isdigit() or int(epochs) < 1:
            raise TransferConfigError(f"stages: {entry!r}: give the stage's maximum epochs, e.g. {name}:100 (a name "
                                      f"alone takes the epochs key, here {default!r})")
        schedule.append((name, int(epochs)))
    if known and not schedule:
        raise TransferConfigError(f"stages: {model_class.__name__} trains in stages {', '.join(known)}; none given")
    return schedule


def forever(loader):
    """A dataloader's batches, epoch after epoch (e.g. one source batch drawn per target batch)."""
    while True:
        yield from loader


def source_feed(model, config, pair, kind, train):
    """The source batches ``model.feeds['source']`` draws from in a stage (``DomainPair.source_feed`` of ``kind``), in
    batches of ``train_batch_size``; with the model's ``source_batch == 'proportional'``, of that size times the
    feed's rows over the stage's training rows (one pass over the stage's rows is then about one pass over the
    source's, as in CATN's released code)."""
    size = int(config["train_batch_size"])
    if getattr(model, "source_batch", "equal") == "proportional":
        stage_rows = max(1, len(train._dataset))
        size = lambda rows: max(1, round(int(config["train_batch_size"]) * rows / stage_rows))  # noqa: E731
    feed = pair.source_feed(kind, size, config)
    if feed is None:
        raise TransferConfigError(f"{type(model).__name__}: no source training rows for this stage ({kind}: e.g. no "
                                  "user who keeps target rows has source training rows)")
    return feed


def start_score(trainer, valid):
    """The validation score of the model as a stage receives it (RecBole's evaluation: no gradient, its random state
    restored; the trainer's early-stopping state untouched)."""
    return calculate_valid_score(trainer.evaluate(valid, load_best_model=False), trainer.valid_metric)


def train_stages(model, config, pair, verbose=False, on_epoch=None):
    """Run the model's schedule; returns the stage report rows (dicts). ``on_epoch(epoch, stage, trainer, last)`` is
    called after each validation (``last``: the stage's last one). A validated stage's ``valid_curve`` lists
    (epoch, seconds since the stage started, validation score), epoch 0 the model as the stage receives it (one
    evaluation more per stage: whether and when training left its start is read from the curve)."""
    report = []
    if not getattr(model, "stages", None):
        return report  # a model that learns nothing
    schedule = parse_stages(type(model), config["stages"], config["epochs"])
    epochs_before = config["epochs"]
    try:
        for index, (name, epochs) in enumerate(schedule):
            spec = model.stages[name]
            skipped = model.skips(name) if hasattr(model, "skips") else None  # e.g. no evaluated score depends on it
            train = None if skipped else pair.feed(spec.train, config)
            if not skipped and (train is None or len(train) == 0):
                skipped = f"no training data ({spec.train}) in this pair and protocol"
            if skipped:
                logger.info("==== stage %s (%d/%d): skipped: %s ====", name, index + 1, len(schedule), skipped)
                report.append({"stage": name, "trains": ", ".join(m for m in spec.modules if hasattr(model, m)), "trainable": 0, "data": spec.train,
                               "valid": "-", "epochs": 0, "max_epochs": epochs, "best_valid": {}, "seconds": 0.0,
                               "train_seconds": [], "model_file": None, "skipped": skipped})
                continue
            valid = pair.valid(spec.valid)
            # lazy: a model that draws no source batch reads nothing
            model.feeds["source"] = forever(source_feed(model, config, pair, spec.feeds, train))
            model.enter_stage(name, "source" if spec.valid == "source" else "target")
            config["epochs"] = epochs
            trainer = TransferTrainer(config, model, stage=name)
            trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
            logger.info("==== stage %s (%d/%d): %s; %d trainable parameters; at most %d epochs; validates on %s ====",
                        name, index + 1, len(schedule), spec.about, trainable, epochs,
                        "nothing" if valid is None else pair.source.dataset.dataset_name if spec.valid == "source"
                        else pair.target.dataset.dataset_name)
            start, curve = time.time(), []
            if valid is not None:  # the validation before the first step: where the stage starts (epoch 0)
                curve.append((0, 0.0, start_score(trainer, valid)))

            def record(epoch_idx, valid_score, trainer=trainer, curve=curve, start=start):
                curve.append((epoch_idx + 1, time.time() - start, float(valid_score)))
                if on_epoch is not None:
                    on_epoch(epoch_idx + 1, name, trainer, trainer.is_last_validation(epoch_idx))

            trainer.extra_state["fingerprint"] = pair.fingerprint()  # what --evaluate must rebuild to test it
            _best_score, best_result = trainer.fit(train, valid, saved=True, verbose=verbose,
                                                  show_progress=config["show_progress"], callback_fn=record)
            if valid is not None:
                trainer.load_best()
            trainer.tensorboard.close()  # RecBole opens a SummaryWriter (a thread and a file) per trainer
            run = len(trainer.train_loss_dict)
            report.append({
                "stage": name, "trains": ", ".join(m for m in spec.modules if hasattr(model, m)), "trainable": trainable, "data": spec.train,
                "valid": "-" if valid is None else spec.valid.replace("_warm", ""), "epochs": run, "max_epochs": epochs,
                "best_valid": dict(best_result or {}), "seconds": time.time() - start,
                "train_seconds": list(trainer.epoch_seconds["train"]), "model_file": trainer.saved_model_file,
                "valid_curve": curve,
            })
    finally:
        config["epochs"] = epochs_before
        model.feeds.clear()
    return report


def stage_table(report):
    if not report:
        return "stages: none (nothing is learned)"
    lines = [[r["stage"], r["trains"], f"{r['trainable']:,}", r["data"], r["valid"], f"{r['epochs']}/{r['max_epochs']}",
              f"skipped: {r['skipped']}" if r.get("skipped") else
              ", ".join(f"{k} {v:.4f}" for k, v in list(r["best_valid"].items())[:2]) or "-", f"{r['seconds']:.1f}"]
             for r in report]
    return markdown(["stage", "trains", "parameters", "data", "validates on", "epochs", "best valid", "s"], lines)
