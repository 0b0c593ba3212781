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
- it calls the transfer strategy's hooks (:class:`~recbole_transfer.transfer.base.TransferStrategy`):
  ``before_fit(trainer)`` once before the first epoch, ``before_epoch(trainer, epoch)`` before each training
  epoch (a strategy's schedule: unfreeze modules, set their learning rate);
- with ``state_keys`` set (by a strategy's ``before_fit``), checkpoints hold only those state entries: a
  *delta* over the pretrained source checkpoint named in ``extra_state['delta_of']``;
- every evaluation keeps RecBole's evaluator result and, per user, the value of every top-k metric
  (``last_per_user``; RecBole's own metric classes compute it), for paired comparisons between arms; a
  checkpoint carries the per-user validation values of its epoch (``valid_per_user``);
- a traditional model (RecBole's ``ModelType.TRADITIONAL``: Pop, ItemKNN, EASE, SLIMElastic, ...) runs one epoch
  whatever ``epochs`` says, as RecBole's ``TraditionalTrainer`` does: it is built from the training rows, not trained;
- with ``sparse_tables: True`` (lazy updates) every trainable embedding table gets sparse gradients and
  ``torch.optim.SparseAdam``, the other parameters the configured Adam (:class:`JoinedOptimizer`): a step costs the
  rows in its batch, not the whole tables (Adam's dense step updates every row: quadratic in the data per epoch);
- ``epoch_seconds`` records the wall time of each training pass and each validation separately;
- the evaluation collector keeps each batch's results in a list and joins them once per evaluation
  (:class:`BatchedStruct`): RecBole's joins them onto a growing tensor at every batch, quadratic in the batches.

The evaluation data (split and candidates) is the protocol's (:mod:`recbole_transfer.data.protocol`):
fixed by the data seed, so two evaluations of one model give the same metrics.
"""

import inspect
import logging
import os
import time
import uuid

import numpy as np
import torch
from recbole.evaluator.base_metric import TopkMetric
from recbole.evaluator.collector import DataStruct
from recbole.trainer import Trainer
from recbole.utils import ModelType, set_color

from ..errors import TransferCheckpointError, TransferConfigError
from ..logs import heartbeat

logger = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "recbole_transfer/1"


class TransferTrainer(Trainer):
    """Trainer of one transfer stage. ``stage`` is 'source' or 'target' (used in names and logs)."""

    def __init__(self, config, model, stage="target", strategy=None):
        self.stage = stage
        self.strategy = strategy  # the transfer strategy whose hooks run (None: no hooks)
        self.extra_state = {}  # plain data stored in every checkpoint (e.g. source user counts)
        self.last_valid_result = None  # the latest validation result (all metrics), for epoch callbacks
        self.state_keys = None  # save only these state entries (a delta checkpoint); None: the whole model
        self.last_per_user = None  # {metric@k: per-user values} of the latest evaluation
        self.last_users = None  # the evaluated users' ids, in the order of last_per_user
        self.epoch_seconds = {"train": [], "valid": []}
        super().__init__(config, model)
        if is_traditional(model):
            self.epochs = 1  # as RecBole's TraditionalTrainer: Pop, ItemKNN, EASE, ... are built, not trained
        # stopping_min_steps (properties/overall.yaml): RecBole's early stopping counts epochs without a better
        # validation; it may not stop the fit before this many optimizer steps (batches) have run
        self.min_steps, self.patience, self.steps_done = int(config["stopping_min_steps"] or 0), self.stopping_step, 0
        self._hold_patience()
        self.evaluator = _Recording(self.evaluator)
        self.eval_collector.data_struct = BatchedStruct()
        name = f"{config['model']}-{config['dataset']}-{stage}-{uuid.uuid4().hex[:8]}.pth"
        self.saved_model_file = os.path.abspath(os.path.join(self.checkpoint_dir, name))
        self.check_optimizer()

    def _build_optimizer(self, **kwargs):
        kwargs.setdefault("params", [p for p in self.model.parameters() if p.requires_grad])
        if not self.config["sparse_tables"]:
            return super()._build_optimizer(**kwargs)
        return self._lazy_optimizer(**kwargs)

    def _lazy_optimizer(self, params, **kwargs):
        """``sparse_tables``: SparseAdam over the trainable embedding tables (made sparse here), the configured Adam
        over the other parameters. Lazy Adam: a table row's moments and value move only at steps whose batch holds it
        (dense Adam keeps moving a row on its momentum), so results differ from dense Adam after the first step."""
        learner = kwargs.get("learner", self.learner)
        weight_decay = kwargs.get("weight_decay", self.weight_decay)
        if str(learner).lower() != "adam" or weight_decay or self.clip_grad_norm:
            raise TransferConfigError(
                f"sparse_tables: True takes learner: adam with weight_decay: 0 and no clip_grad_norm (got learner "
                f"{learner!r}, weight_decay {weight_decay!r}, clip_grad_norm {self.clip_grad_norm!r}): SparseAdam "
                "has neither; regularise the tables in the model's loss, or set sparse_tables: False")
        tables = {id(m.weight): m for m in self.model.modules()
                  if isinstance(m, (torch.nn.Embedding, torch.nn.EmbeddingBag)) and m.weight.requires_grad}
        for module in tables.values():
            module.sparse = True
        sparse = [p for p in params if id(p) in tables]
        dense = [p for p in params if id(p) not in tables]
        lr = kwargs.get("learning_rate", self.learning_rate)
        dense_kwargs = {k: v for k, v in kwargs.items() if k != "params"}
        make_dense = lambda params: super(TransferTrainer, self)._build_optimizer(params=params, **dense_kwargs)  # noqa: E731
        names = {id(p): n for n, p in self.model.named_parameters()}
        return JoinedOptimizer(torch.optim.SparseAdam(sparse, lr=lr) if sparse else None,
                               make_dense(dense) if dense else None, {id(p): names.get(id(p), "?") for p in sparse},
                               make_dense)

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

    def fit(self, train_data, valid_data=None, verbose=True, saved=True, show_progress=False, callback_fn=None):
        if self.strategy is not None:
            self.strategy.before_fit(self)
        return super().fit(train_data, valid_data, verbose=verbose, saved=saved, show_progress=show_progress,
                           callback_fn=callback_fn)

    def is_last_validation(self, epoch_idx):
        """Whether the validation after epoch ``epoch_idx`` (0-based) is this fit's last: no validation fits in the
        epochs left, or RecBole's early stopping has run out of patience."""
        return epoch_idx + self.eval_step >= self.epochs or self.cur_step > self.stopping_step

    def _train_epoch(self, train_data, epoch_idx, loss_func=None, show_progress=False):
        if self.strategy is not None:
            self.strategy.before_epoch(self, epoch_idx)
        start = time.perf_counter()
        with heartbeat(f"epoch {epoch_idx} training", logger):
            loss = super()._train_epoch(train_data, epoch_idx, loss_func=loss_func, show_progress=show_progress)
        self.epoch_seconds["train"].append(time.perf_counter() - start)
        self.steps_done += len(train_data)
        self._hold_patience()
        return loss

    def _hold_patience(self):
        """RecBole's ``stopping_step`` as configured once ``min_steps`` optimizer steps have run; unbounded before."""
        self.stopping_step = self.patience if self.steps_done >= self.min_steps else 2 ** 62

    def _valid_epoch(self, valid_data, show_progress=False):
        start = time.perf_counter()
        valid_score, self.last_valid_result = super()._valid_epoch(valid_data, show_progress=show_progress)
        self.epoch_seconds["valid"].append(time.perf_counter() - start)
        return valid_score, self.last_valid_result

    # ----- checkpoints -------------------------------------------------------------------------
    def checkpoint_state(self, epoch):
        return {
            "format": CHECKPOINT_FORMAT,
            "stage": self.stage,
            "config": self.config.reload_dict() if hasattr(self.config, "reload_dict") else {},
            "epoch": epoch,
            "cur_step": self.cur_step,
            "steps_done": self.steps_done,
            "best_valid_score": float(self.best_valid_score),
            "state_dict": self._saved_state(),
            "trainable": [n for n, p in self.model.named_parameters() if p.requires_grad],
            "optimizer": self.optimizer.state_dict(),
            "valid_per_user": self.last_per_user,  # this epoch's validation, per user (paired selection)
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
        self.steps_done = int(checkpoint.get("steps_done", 0))
        self._hold_patience()
        self.best_valid_score = checkpoint["best_valid_score"]
        load_model_state(self.model, checkpoint)
        if isinstance(self.optimizer, JoinedOptimizer) != ("sparse" in checkpoint["optimizer"]):
            raise TransferCheckpointError(f"checkpoint {resume_file!r}: its optimizer state was saved with sparse_tables: "
                                          f"{not isinstance(self.optimizer, JoinedOptimizer)}; resume with that key")
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
        with heartbeat("evaluating", logger):
            result = super().evaluate(eval_data, load_best_model=False, show_progress=show_progress)
        self.last_per_user = per_user_metrics(self.evaluator) if eval_data else None
        self.last_users = evaluated_users(eval_data) if eval_data else None
        return result


class JoinedOptimizer:
    """SparseAdam over the embedding tables and the configured optimizer over the rest, stepped as one (RecBole's trainer
    holds one ``optimizer``). ``param_groups`` lists the sparse part's groups, then the dense part's (a strategy that
    sets a group's learning rate sets it in its optimizer); the state dict holds each part's. ``sparse_names``: {id:
    name} of the parameters whose gradient must be sparse; a dense one (a model that reads the table whole in its
    loss) is refused at the first step, by name. ``add_param_group`` (a strategy unfreezing modules during the fit)
    puts the group in the dense part, built by ``make_dense`` if there is none yet: parameters unfrozen later are
    updated densely, and ``param_groups[-1]`` is the group just added, as with one optimizer."""

    def __init__(self, sparse, dense, sparse_names, make_dense):
        self.sparse, self.dense, self.sparse_names, self.make_dense = sparse, dense, dict(sparse_names), make_dense

    @property
    def parts(self):
        return [part for part in (self.sparse, self.dense) if part is not None]

    @property
    def param_groups(self):
        return [group for part in self.parts for group in part.param_groups]

    def add_param_group(self, group):
        marked = [p for p in group["params"] if id(p) in self.sparse_names]
        if marked:
            raise TransferConfigError(f"sparse_tables: {self.sparse_names[id(marked[0])]!r} is already optimised with "
                                      "sparse gradients; it cannot join another parameter group")
        if self.dense is None:
            self.dense = self.make_dense(group["params"])
            self.dense.param_groups[-1].update({k: v for k, v in group.items() if k != "params"})
        else:
            self.dense.add_param_group(group)

    def zero_grad(self, set_to_none=True):
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)

    def step(self, closure=None):
        for group in self.sparse.param_groups if self.sparse is not None else []:
            for p in group["params"]:
                if p.grad is not None and not p.grad.is_sparse:
                    raise TransferConfigError(
                        f"sparse_tables: the table {self.sparse_names.get(id(p), '?')!r} got a dense gradient (the "
                        "model reads the whole table in its loss, not rows by lookup); set sparse_tables: False")
        loss = closure() if closure is not None else None
        for part in self.parts:
            part.step()
        return loss

    def state_dict(self):
        return {"sparse": None if self.sparse is None else self.sparse.state_dict(),
                "dense": None if self.dense is None else self.dense.state_dict()}

    def load_state_dict(self, state):
        if set(state) != {"sparse", "dense"} or any((state[k] is None) != (part is None) for k, part in
                                                     (("sparse", self.sparse), ("dense", self.dense))):
            raise TransferCheckpointError("the checkpoint's optimizer state is not that of this run's sparse_tables: "
                                          "True optimizers (resume with the keys and trainable modules it was saved with)")
        for part, part_state in ((self.sparse, state["sparse"]), (self.dense, state["dense"])):
            if part is not None:
                part.load_state_dict(part_state)


def is_traditional(model):
    """True for a model (or model class) of RecBole's ``ModelType.TRADITIONAL``: built from the training rows in one
    pass, never trained by gradient steps (one epoch, whatever ``epochs`` says)."""
    return getattr(model, "type", None) == ModelType.TRADITIONAL


class BatchedStruct(DataStruct):
    """RecBole's DataStruct with ``update_tensor`` in linear time: a name's batches are kept in a list and joined once,
    on the first read after them (RecBole joins each batch onto the whole so far). Same tensors, same order."""

    def __init__(self):  # not DataStruct.__init__: it assigns _data_dict, a property here
        self._joined, self._pending = {}, {}

    @property
    def _data_dict(self):
        while self._pending:
            name, parts = self._pending.popitem()
            self._joined[name] = torch.cat(([self._joined[name]] if name in self._joined else []) + parts, dim=0)
        return self._joined

    def update_tensor(self, name, value):
        if name in self._joined and not isinstance(self._joined[name], torch.Tensor):
            raise ValueError(f"{name} is not a tensor.")
        self._pending.setdefault(name, []).append(value.clone().detach())


class _Recording:
    """RecBole's Evaluator, keeping the data of its last evaluation (for per-user values)."""

    def __init__(self, evaluator):
        self.evaluator, self.last_struct = evaluator, None

    def __getattr__(self, name):
        return getattr(self.evaluator, name)

    def evaluate(self, dataobject):
        self.last_struct = dataobject
        return self.evaluator.evaluate(dataobject)


def evaluated_users(eval_data):
    """User ids of an evaluation's rows, in RecBole's order (one row per user; sequential full ranking:
    one per test sequence)."""
    users = getattr(eval_data, "uid_list", None)
    if users is None:
        dataset = eval_data._dataset
        users = dataset.inter_feat[dataset.uid_field]
    return np.asarray(users, dtype=np.int64).tolist()


def per_user_metrics(evaluator):
    """{'hit@10': [value per evaluated user], ...} for every top-k metric of the last evaluation, by RecBole's
    own metric classes (their mean is RecBole's reported value, before rounding); rounded to 6 decimals."""
    struct = evaluator.last_struct
    out = {}
    if struct is None or "rec.topk" not in struct:
        return out
    for name, metric in evaluator.metric_class.items():
        if not isinstance(metric, TopkMetric):
            continue
        pos_index, pos_len = metric.used_info(struct)
        takes = len(inspect.signature(metric.metric_info).parameters)
        values = metric.metric_info(pos_index) if takes == 1 else metric.metric_info(pos_index, pos_len)
        for k in metric.topk:
            out[f"{name}@{k}"] = np.round(np.asarray(values[:, k - 1], dtype=np.float64), 6).tolist()
    return out


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
