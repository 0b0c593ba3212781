"""Transfer strategies: objects that change a target model using a source model's weights.

Contract (shared by every strategy, later ones included): ``check`` validates everything and raises a
:class:`TransferError` before anything is touched; ``apply`` mutates the target model; ``report``
returns a table of what happened per parameter plus the ``trainable params`` line. The trainer builds
its optimizer after ``apply``, over trainable parameters only. Also: ``label``, ``is_identity``,
``loads_source`` (whether ``apply`` reads the source's weights), ``trainable_counts``,
``checkpoint_plan(model, config)``, ``prepare_reload(model, checkpoint)`` (make a freshly built model
able to load a checkpoint the strategy wrote) and ``before_epoch`` (None, or ``f(trainer, epoch)`` run
by the trainer before each training epoch).
"""

import logging

import torch

from ..errors import TransferConfigError, TransferLayerError
from .layers import parse_transfer, resolve_layers

logger = logging.getLogger(__name__)


def trainable_summary(model):
    """``trainable params: N || all params: M || trainable%: x`` for a model."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    pct = 100.0 * trainable / total if total else 0.0
    return f"trainable params: {trainable:,} || all params: {total:,} || trainable%: {pct:.4f}"


def require_source(strategy, source_state):
    """Raise when ``strategy`` must read the source's weights and none were given."""
    if strategy.loads_source and source_state is None:
        raise TransferLayerError(f"transfer={strategy.label!r} needs a source model, but none was given")


def format_report(title, rows, summary):
    """A strategy's report: the title, one line per parameter (name, shape, action), the summary."""
    width = max([len(r[0]) for r in rows] + [9])
    lines = [title, f"{'parameter':<{width}}  {'shape':<14}  action"]
    lines += [f"{name:<{width}}  {str(shape):<14}  {action}" for name, shape, action in rows]
    lines.append(summary)
    return "\n".join(lines)


class LayerTransfer:
    """Copy named layers from a source state dict into a target model; freeze or fine-tune them.

    Args:
        transfer: 'none', 'config-1'..'config-7', or a list of layer groups / module names.
        mode: 'freeze' (paper) or 'finetune'.
        containers: optional override of the model's transfer containers.
    """

    def __init__(self, transfer="none", mode="freeze", containers=None):
        self.label, self.names = parse_transfer(transfer)
        self.mode = mode
        self.containers = containers
        self.modules = []
        self._rows = []

    @classmethod
    def from_config(cls, config):
        return cls(config["transfer"], config["transfer_mode"], config["transfer_containers"])

    @property
    def is_identity(self):
        return not self.names

    @property
    def loads_source(self):
        return bool(self.names)

    def _param_pairs(self, model):
        for module_name in self.modules:
            module = model.get_submodule(module_name)
            for pname, param in module.named_parameters():
                yield f"{module_name}.{pname}", param

    def check(self, model, source_state=None, source_ids=None, target_ids=None):
        """Resolve names on ``model``; with a source state, also compare shapes. Touches nothing.

        With ``source_ids`` and ``target_ids`` ({id field: [token, ...]} of each dataset), a transferred
        ``nn.Embedding`` whose row count is that of an id field must index the same tokens in both
        domains: an embedding table only means something in the id space it was trained in.
        """
        self.modules = resolve_layers(model, self.names, self.containers)
        if source_ids is not None and target_ids is not None:
            self._check_id_spaces(model, source_ids, target_ids)
        if source_state is None:
            return self
        for full_name, param in self._param_pairs(model):
            if full_name not in source_state:
                raise TransferLayerError(
                    f"transfer: parameter {full_name!r} is missing from the source model "
                    f"(source parameters: {', '.join(source_state)})"
                )
            src_shape = tuple(source_state[full_name].shape)
            if src_shape != tuple(param.shape):
                raise TransferLayerError(
                    f"transfer: layer {full_name!r} has shape {src_shape} in the source but "
                    f"{tuple(param.shape)} in the target; transferred layers must have equal shapes"
                )
        return self

    def _check_id_spaces(self, model, source_ids, target_ids):
        for module_name in self.modules:
            module = model.get_submodule(module_name)
            if not isinstance(module, torch.nn.Embedding):
                continue
            id_fields = [getattr(model, "USER_ID", None), getattr(model, "ITEM_ID", None)]
            fields = [f for f in id_fields if f in target_ids and len(target_ids[f]) == module.num_embeddings]
            if not fields or any(list(source_ids.get(f, [])) == list(target_ids[f]) for f in fields):
                continue
            field = fields[0]
            src, tgt = list(source_ids.get(field, [])), list(target_ids[field])
            where = next((k for k, (a, b) in enumerate(zip(src, tgt)) if a != b), min(len(src), len(tgt)))
            raise TransferLayerError(
                f"transfer: {module_name!r} embeds {field!r} ids, but the source and target id spaces differ "
                f"({len(src)} vs {len(tgt)} ids; first difference at index {where}: "
                f"{src[where] if where < len(src) else '<end>'!r} vs {tgt[where] if where < len(tgt) else '<end>'!r}); "
                f"embeddings only transfer between domains with the same {field!r} tokens in the same order"
            )

    def apply(self, model, source_state):
        """Copy, then freeze (or keep trainable) the checked layers. Returns the model."""
        require_source(self, source_state)
        self.check(model, source_state)
        moved = set()
        with torch.no_grad():
            for full_name, param in self._param_pairs(model):
                param.copy_(source_state[full_name].to(param.device))
                param.requires_grad_(self.mode != "freeze")
                moved.add(full_name)
        self._rows = []
        for name, param in model.named_parameters():
            if name in moved:
                action = "copied, frozen" if self.mode == "freeze" else "copied, fine-tuned"
            else:
                action = "initialised, trained"
            self._rows.append((name, tuple(param.shape), action))
        self._summary = trainable_summary(model)
        return model

    def report(self):
        """A text table of every parameter and what the strategy did to it, then the summary line."""
        return format_report(f"transfer: {self.label} ({self.mode})", self._rows, self._summary)

    # layer transfer saves whole models, reports no method-specific counts, needs no epoch hook
    trainable_counts = None
    before_epoch = None

    def checkpoint_plan(self, model, config):
        """(state keys to save, extra checkpoint data): the whole model."""
        return None, {}

    def prepare_reload(self, model, checkpoint):
        """A layer-transferred checkpoint loads into a freshly built model as it is."""


def _declares(model_name, attribute):
    """True when the model class of ``model_name`` declares ``attribute``; False for None."""
    from ..config import get_model

    return model_name is not None and bool(getattr(get_model(model_name), attribute, None))


def uses_patches(model_name):
    """True for a model fine-tuned by method (declares ``transfer_methods``: PeterRec); False for None."""
    return _declares(model_name, "transfer_methods")


def uses_shared_modules(model_name):
    """True for a model that declares ``shared_modules`` (MMTNet); False for None."""
    return _declares(model_name, "shared_modules")


def make_strategy(config):
    """The strategy a config asks for: model patches for a model that declares ``transfer_methods``
    (PeterRec), shared-module transfer for one that declares ``shared_modules`` (MMTNet), layer transfer
    otherwise. Raises TransferConfigError for a method the model cannot take."""
    from .invariants import SHARED_METHODS, SharedModuleTransfer, is_shared_method
    from .patches import METHODS, PatchTransfer, is_patch_method

    if uses_patches(config["model"]):
        return PatchTransfer.from_config(config)
    if uses_shared_modules(config["model"]):
        return SharedModuleTransfer.from_config(config)
    for methods, is_method, owner, kind in ((METHODS, is_patch_method, "PeterRec", "fine-tuning method"),
                                            (SHARED_METHODS, is_shared_method, "MMTNet", "shared-module transfer")):
        if is_method(config["transfer"]):
            raise TransferConfigError(
                f"transfer={config['transfer']!r}: {owner}'s {kind} ({', '.join(methods)}); use "
                f"--model={owner}, or a layer transfer (none, config-1..7, a list of layers) for {config['model']}"
            )
    return LayerTransfer.from_config(config)
