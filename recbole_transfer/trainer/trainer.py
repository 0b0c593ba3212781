"""TransferTrainer: RecBole's Trainer for one stage (source or target) of a transfer.

What it changes in :class:`recbole.trainer.Trainer`, and nothing else (training and evaluation loops,
early stopping, evaluator, logging are RecBole's):

- the optimizer is built over trainable parameters only, after the transfer strategy ran, and the
  trainer asserts that the optimizer's parameters are exactly the model's trainable ones;
- checkpoints hold state dicts and plain data only, saved with torch's default pickle protocol, so they
  load with ``torch.load(weights_only=True)`` (RecBole pickles its Config and crashes on torch >= 2.6);
- checkpoint names carry the stage, the dataset and a unique suffix (RecBole's have one-second
  resolution: parallel runs overwrite each other);
- ``evaluate(load_best_model=True)`` and ``resume_checkpoint`` use the weights-only loader;
- ``before_epoch(trainer, epoch)``, when set, runs before each training epoch (a strategy's schedule:
  annealed fine-tuning unfreezes modules and sets their learning rate there);
- with ``state_keys`` set (model patches), checkpoints hold only those state entries: a *delta* over the
  pretrained source checkpoint named in ``extra_state['delta_of']``;
- with ``eval_seed`` set, sampled evaluation negatives (uniN) are drawn under that fixed seed and the
  random state is restored afterwards: every arm, and a reloaded model, is scored on the same
  candidates. Default ``eval_seed: ~`` keeps RecBole's behaviour exactly.
"""

import contextlib
import os
import random
import uuid

import numpy as np
import torch
from recbole.trainer import Trainer
from recbole.utils import set_color

from ..errors import TransferCheckpointError

CHECKPOINT_FORMAT = "recbole_transfer/1"


class TransferTrainer(Trainer):
    """Trainer of one transfer stage. ``stage`` is 'source' or 'target' (used in names and logs)."""

    def __init__(self, config, model, stage="target"):
        self.stage = stage
        self.extra_state = {}  # plain data stored in every checkpoint (e.g. source user counts)
        self.last_valid_result = None  # the latest validation result (all metrics), for epoch callbacks
        self.state_keys = None  # save only these state entries (a delta checkpoint); None: the whole model
        self.before_epoch = None  # f(trainer, epoch) before each training epoch (a strategy's schedule)
        super().__init__(config, model)
        name = f"{config['model']}-{config['dataset']}-{stage}-{uuid.uuid4().hex[:8]}.pth"
        self.saved_model_file = os.path.abspath(os.path.join(self.checkpoint_dir, name))
        self.check_optimizer()

    def _build_optimizer(self, **kwargs):
        kwargs.setdefault("params", [p for p in self.model.parameters() if p.requires_grad])
        return super()._build_optimizer(**kwargs)

    def check_optimizer(self):
        """Assert that the optimizer updates exactly the model's trainable parameters."""
        in_optimizer = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        trainable = {id(p) for p in self.model.parameters() if p.requires_grad}
        assert in_optimizer == trainable, (
            f"optimizer holds {len(in_optimizer)} tensors but the model has {len(trainable)} trainable ones"
        )

    def rebuild_optimizer(self):
        """Call after changing which parameters are trainable (e.g. gradual unfreezing)."""
        self.optimizer = self._build_optimizer()
        self.check_optimizer()

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.before_epoch is not None:
            self.before_epoch(self, epoch_idx)
        return super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)

    def _valid_epoch(self, valid_data, show_progress=False):
        valid_score, self.last_valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        return valid_score, self.last_valid_result

    # ----- checkpoints -------------------------------------------------------------------------
    def checkpoint_state(self, epoch):
        return {
            "format": CHECKPOINT_FORMAT,
            "stage": self.stage,
            "config": self.config.reload_dict() if hasattr(self.config, "reload_dict") else {},
            "epoch": epoch,
            "cur_step": self.cur_step,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self._saved_state(),
            "trainable": [n for n, p in self.model.named_parameters() if p.requires_grad],
            "optimizer": self.optimizer.state_dict(),
            **self.extra_state,
        }

    def _saved_state(self):
        state = self.model.state_dict()
        return state if self.state_keys is None else {k: state[k] for k in self.state_keys}

    def _save_checkpoint(self, epoch, verbose=True, **kwargs):
        saved_model_file = kwargs.pop("saved_model_file", self.saved_model_file)
        torch.save(self.checkpoint_state(epoch), saved_model_file)
        if verbose:
            self.logger.info(set_color("Saving current", "blue") + f": {saved_model_file}")

    def resume_checkpoint(self, resume_file):
        checkpoint = load_checkpoint(resume_file, map_location=self.device)
        self.saved_model_file = str(resume_file)
        self.start_epoch = checkpoint["epoch"] + 1
        self.cur_step = checkpoint["cur_step"]
        self.best_valid_score = checkpoint["best_valid_score"]
        load_model_state(self.model, checkpoint)
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.logger.info(f"Checkpoint loaded. Resume training from epoch {self.start_epoch}")

    def load_best(self, model_file=None):
        checkpoint_file = model_file or self.saved_model_file
        checkpoint = load_checkpoint(checkpoint_file, map_location=self.device)
        load_model_state(self.model, checkpoint)
        self.logger.info(f"Loading model parameters from {checkpoint_file}")

    @torch.no_grad()
    def evaluate(self, eval_data, load_best_model=True, model_file=None, show_progress=False):
        if eval_data and load_best_model:
            self.load_best(model_file)
        seed = self.config["eval_seed"]
        with fixed_rng(seed) if seed is not None else contextlib.nullcontext():
            return super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)


@contextlib.contextmanager
def fixed_rng(seed):
    """Seed python, numpy and torch for a block, then restore their previous states."""
    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def load_checkpoint(path, map_location="cpu"):
    """Load a recbole_transfer checkpoint with ``weights_only=True``; clear errors otherwise."""
    path = str(path)
    if not os.path.isfile(path):
        raise TransferCheckpointError(f"checkpoint {path!r}: file not found")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure means "not ours"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TransferCheckpointError(
            f"checkpoint {path!r}: cannot be loaded with weights_only=True ({first[:160]}). "
            f"Only checkpoints written by recbole_transfer (state dicts + plain data) are accepted; "
            f"RecBole's own .pth files pickle their Config and are refused."
        ) from None
    if not isinstance(checkpoint, dict) or checkpoint.get("format") != CHECKPOINT_FORMAT:
        raise TransferCheckpointError(
            f"checkpoint {path!r}: not a recbole_transfer checkpoint (expected format {CHECKPOINT_FORMAT!r})"
        )
    return checkpoint


def load_model_state(model, checkpoint):
    """Load a checkpoint's weights; a delta checkpoint must cover every entry but its source's frozen ones."""
    if not checkpoint.get("delta_of"):
        model.load_state_dict(checkpoint["state_dict"])
        return
    result = model.load_state_dict(checkpoint["state_dict"], strict=False)
    expected = set(checkpoint.get("source_keys", []))
    if result.unexpected_keys or set(result.missing_keys) != expected:
        raise TransferCheckpointError(
            f"delta checkpoint over {checkpoint['delta_of']!r} does not fit the model: unexpected "
            f"{result.unexpected_keys[:4]}, missing {sorted(set(result.missing_keys) - expected)[:4]}"
        )
