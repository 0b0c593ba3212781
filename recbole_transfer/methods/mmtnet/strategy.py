"""Shared-module transfer (MMT-Net, seed 000): move a model's contextual invariants to a sparse target.

A model takes part by declaring ``shared_modules`` (the names of the modules every domain shares: MMTNet's
context, clustering and ranking modules), ``token_tables()`` (state keys of embedding tables indexed by
the domain's token ids, with their field) and ``input_points()`` (one :class:`InputPoint` per shared
module). Everything else in the model (user and item embeddings) is the target's own and always trains.

Methods (the ``transfer`` key):

- ``none``: scratch, the baseline; nothing moves.
- ``frozen``: copy the shared modules, freeze them; only the target's embeddings train.
- ``anneal``: copy; the shared modules stay frozen for ``anneal_warmup`` epochs, then train with a learning
  rate of ``learning_rate * anneal_lr * anneal_decay**t`` in the t-th epoch after the warm-up (their own
  optimizer parameter group, added when they unfreeze) [R].
- ``drr``: copy and freeze; a zero-initialised residual adapter (``adapter_width``) on each shared module's
  input, x~ = x + R(x), trained with the target's embeddings under the penalty
  ``drr_beta`` * KL(batch statistics of x~ || the source's) + ``drr_lambda`` * ||R(x)||^2 [R].
- ``random``: the control. The shared modules keep their random initialisation and are frozen; adapters
  train as in ``drr``. There are no source statistics to match, so its KL term is off (beta = 0).

Every method that copies (frozen, anneal, drr) also starts (``target_embedding_init: source_mean``, the
default; ``random`` keeps the model's initialiser) the target's own embedding tables at the
source's mean input of the module that reads them (``embedding_inputs``: user_embedding -> user_cluster,
...), recorded as that module's input statistics [R]: an item the target has not trained yet looks like
the source's average item, so its score comes from the context (its genres, decade, the user's
demographics, the time), which is what the shared modules carry. Random rows there would feed the frozen
modules noise they never saw.

Copying aligns context tables by token (:func:`~recbole_transfer.data.context.align_tokens`): a target
token the source never saw gets a zero row (no information), and the report says how many. The source's
input statistics are buffers of the shared modules and move with them; ``track`` is switched off on every
target so they stay the source's.
"""

import logging

import torch

from ... import keys
from ...data.context import align_tokens, copy_aligned
from ...errors import TransferConfigError, TransferLayerError, did_you_mean
from ...model.layers import Patch
from ...transfer import NO_TRANSFER, TransferReport, TransferStrategy, parameter_counts, trainable_summary

logger = logging.getLogger(__name__)

NONE = NO_TRANSFER
SHARED_METHODS = ("frozen", "anneal", "drr", "random")
ADAPTER_METHODS = ("drr", "random")
# Arms of a one-to-many scenario, in table order: scratch, the paper's two transfers, the random control.
SHARED_ARMS = [NONE, "anneal", "drr", "random"]
EMBEDDING_INITS = ("source_mean", "random")


def _is_adapter(name):
    """True for a state key or parameter name inside a residual adapter (``<module>.entry.adapter.*``)."""
    return ".adapter." in f".{name}"


def is_shared_method(value):
    return isinstance(value, str) and value.strip().lower() in SHARED_METHODS


class SharedModuleTransfer(TransferStrategy):
    """Transfer strategy of a model that declares ``shared_modules`` (see the module docstring)."""

    def __init__(self, method=NONE, warmup=2, anneal_lr=0.1, anneal_decay=0.8, adapter_width=8, beta=0.1, lam=1e-3,
                 embedding_init="source_mean"):
        method = str(method).strip().lower()
        if method not in (NONE,) + SHARED_METHODS:
            raise TransferConfigError(
                f"transfer={method!r}: unknown transfer for a shared-module model{did_you_mean(method, SHARED_METHODS)}; "
                f"allowed: none (scratch), {', '.join(SHARED_METHODS)}"
            )
        keys.check({"anneal_warmup": warmup, "anneal_lr": anneal_lr, "anneal_decay": anneal_decay,  # the keys' ranges
                    "adapter_width": adapter_width, "drr_beta": beta, "drr_lambda": lam,
                    "target_embedding_init": embedding_init})
        self.method, self.warmup, self.anneal_lr, self.anneal_decay = method, warmup, float(anneal_lr), float(anneal_decay)
        self.adapter_width, self.beta, self.lam = adapter_width, float(beta), float(lam)
        self.embedding_init = embedding_init
        self.label = method
        self.loads_source = method in ("frozen", "anneal", "drr")

    @classmethod
    def from_config(cls, config):
        return cls(config["transfer"], config["anneal_warmup"], config["anneal_lr"], config["anneal_decay"],
                   config["adapter_width"], config["drr_beta"], config["drr_lambda"], config["target_embedding_init"])

    # ----- check, then mutate ------------------------------------------------------------------
    @staticmethod
    def _shared_state(model):
        """{state key: tensor} of the shared modules, adapters excluded."""
        names = getattr(type(model), "shared_modules", None)
        if not names:
            raise TransferLayerError(
                f"transfer: {type(model).__name__} declares no shared_modules; shared-module transfers "
                f"({', '.join(SHARED_METHODS)}) are for models such as MMTNet"
            )
        state = {}
        for name in names:
            for key, value in model.get_submodule(name).state_dict().items():
                if not _is_adapter(key):
                    state[f"{name}.{key}"] = value
        return state

    @classmethod
    def arm_label(cls, arm):
        return cls(arm).label

    def check(self, model, source=None, target=None):
        """Check the shared modules' keys and shapes against the source; with the target domain, align the context
        tables by token. Touches nothing."""
        self._alignment(model, source, target)

    def _alignment(self, model, source, target):
        """{state key of a context table: target row -> source row (-1: unseen)}, after every check."""
        own, alignment = self._shared_state(model), {}
        if source is None or not self.loads_source:
            return alignment
        source_state, tables = source.state_dict, model.token_tables()
        source_ids, target_ids = source.id_tokens or None, target.id_tokens() if target is not None else None
        for key, value in own.items():
            if key not in source_state:
                raise TransferLayerError(
                    f"transfer: shared parameter {key!r} is missing from the source model (its keys start "
                    f"{', '.join(list(source_state)[:6])}...); source and target must be the same model"
                )
            if key in tables:
                if source_ids is None or target_ids is None:
                    continue  # aligned only when both domains' tokens are given
                field = tables[key]
                for side, ids in (("source", source_ids), ("target", target_ids)):
                    if field not in ids:
                        raise TransferLayerError(
                            f"transfer: the {side} domain's tokens of context field {field!r} are unknown (a "
                            f"source checkpoint written before context transfer?); retrain the source"
                        )
                if len(source_ids[field]) != source_state[key].shape[0]:
                    raise TransferLayerError(
                        f"transfer: source table {key!r} has {source_state[key].shape[0]} rows for "
                        f"{len(source_ids[field])} {field!r} tokens"
                    )
                alignment[key] = align_tokens(source_ids[field], target_ids[field], field)
            elif tuple(source_state[key].shape) != tuple(value.shape):
                raise TransferLayerError(
                    f"transfer: shared parameter {key!r} has shape {tuple(source_state[key].shape)} in the source "
                    f"but {tuple(value.shape)} in the target; the shared modules' sizes must match"
                )
        return alignment

    def apply(self, model, source=None, target=None):
        """Check, then copy (aligned by token), freeze and graft adapters, as the method says."""
        self.require_source(source)
        alignment = self._alignment(model, source, target)
        own, tables, unseen = self._shared_state(model), model.token_tables(), {}
        if self.loads_source:
            missing = [k for k in tables if k not in alignment]
            if missing:
                raise TransferLayerError(
                    f"transfer: context table {missing[0]!r} cannot be aligned without the target domain's tokens"
                )
            source_state = source.state_dict
            with torch.no_grad():
                for key, value in own.items():
                    if key in tables:
                        rows = alignment[key]
                        value[torch.as_tensor(rows) < 0] = 0.0
                        unseen[key] = (copy_aligned(value, source_state[key], rows), len(rows) - 1)
                    else:
                        value.copy_(source_state[key].to(value.device))
        points = model.input_points()
        if self.loads_source and self.embedding_init == "source_mean":  # own embeddings: the source's mean input
            with torch.no_grad():
                for table, reader in getattr(type(model), "embedding_inputs", {}).items():
                    model.get_submodule(table).weight.copy_(points[reader].mean.expand_as(model.get_submodule(table).weight))
        for point in points.values():
            point.track = False
        shared = self.shared_parameters(model)
        for param in shared:  # anneal unfreezes them after its warm-up (before_epoch)
            param.requires_grad_(False)
        if self.method in ADAPTER_METHODS:
            self.add_adapters(model)
        return self._report(model, {id(p) for p in shared}, tables, unseen)

    def add_adapters(self, model):
        """A zero-initialised adapter on each shared module's input (identity at graft time), with the
        DRR penalty's weights (the control has no source statistics: no KL term)."""
        for point in model.input_points().values():
            point.adapter = Patch(point.size, self.adapter_width).to(point.mean.device)
            point.beta = self.beta if self.method == "drr" else 0.0
            point.lam = self.lam

    @staticmethod
    def shared_parameters(model):
        return [p for name in type(model).shared_modules for n, p in model.get_submodule(name).named_parameters()
                if not _is_adapter(n)]

    def before_epoch(self, trainer, epoch):
        """Annealing: unfreeze the shared modules after the warm-up, in their own parameter group, and set
        that group's learning rate for this epoch (``epoch`` counts from 0)."""
        if self.method != "anneal" or epoch < self.warmup:
            return
        shared = self.shared_parameters(trainer.model)
        if not shared[0].requires_grad:
            for param in shared:
                param.requires_grad_(True)
            trainer.optimizer.add_param_group({"params": shared})
            trainer.check_optimizer()
            logger.info("anneal: shared modules unfrozen at epoch %d", epoch)
        trainer.optimizer.param_groups[-1]["lr"] = trainer.learning_rate * self.anneal_lr * self.anneal_decay ** (epoch - self.warmup)

    # ----- reload and report -------------------------------------------------------------------
    def prepare_reload(self, model, checkpoint):
        """Make a freshly built model hold what the checkpoint holds: the method's adapters."""
        if self.method in ADAPTER_METHODS:
            self.add_adapters(model)

    def _report(self, model, shared_ids, tables, unseen):
        copied = "copied from the source" if self.loads_source else "random (not from the source)"
        if self.method == "anneal":
            after = (f"frozen {self.warmup} epochs, then lr x {self.anneal_lr:g} x {self.anneal_decay:g}^t")
        else:
            after = "frozen"
        rows, counts = [], {"trainable": 0, "adapters": 0, "shared": 0, "own": 0}
        for name, param in model.named_parameters():
            if _is_adapter(name):
                action, kind = "residual adapter (zero at start), trained", "adapters"
            elif id(param) in shared_ids:
                kind = "shared"
                key_unseen = unseen.get(name)
                how = copied if key_unseen is None else f"{copied} by token ({key_unseen[1] - key_unseen[0]}/{key_unseen[1]} tokens; unseen ones zero)"
                action = f"{how}, {after}"
            else:
                action, kind = "domain-specific, trained", "own"
            counts[kind] += param.numel()
            trains = param.requires_grad or (self.method == "anneal" and kind == "shared")  # after the warm-up
            counts["trainable"] += param.numel() if trains else 0
            rows.append((name, tuple(param.shape), action))
        counts["all"] = parameter_counts(model)["all"]
        summary = trainable_summary(model)
        if self.method == "anneal":
            summary += f" (during the warm-up; {counts['trainable']:,} after it)"
        if unseen and any(u for u, _ in unseen.values()):
            logger.warning("transfer: target context tokens unseen in the source (rows set to zero): %s",
                           {tables[k]: u for k, (u, _) in unseen.items() if u})
        return TransferReport(f"transfer: {self.label} (shared modules)", rows, summary, counts)
