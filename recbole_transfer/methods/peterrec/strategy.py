"""Model patches (PeterRec): graft small bottleneck modules into a pretrained network, fine-tune a fraction.

A *model patch* is ``h -> h + W_up GELU(W_down h)`` over the channel dimension (``W_down``: d -> r,
``W_up``: r -> d). ``W_up`` starts at zero, so a freshly grafted network computes exactly what the
pretrained one computes. The original sums several parallel bottlenecks ("cardinality"); with an
element-wise GELU that is one bottleneck of the summed width, so the width ``r`` is what we expose.

Where patches go (``patch_position``):

- ``serial``: after each declared layer of every residual block (NextItNet: both dilated convolutions),
  by wrapping that layer: ``patch(layer(x))``;
- ``parallel``: one patch per block, beside it: ``block(x) + W_up GELU(W_down x)``. This is an exact
  identity at graft time too. (The official code adds its parallel branch inside the block, before the
  layer norm, with an extra identity term, which is not an identity at graft time; not implemented.)

The backbone is never forked: a :class:`Backbone` declaration names its embedding, its container of
residual blocks and the layers inside a block; wrapping happens on the live modules.

:class:`PatchTransfer` is the transfer strategy of the fine-tuning methods of the paper's Table 3 —
``peterrec`` (patches + head), ``peterzero`` (the same, without pretraining), ``finecls`` (head only),
``finelast`` (last block + head), ``fineall`` (everything) — with the contract of every strategy:
``check`` (touches nothing), ``apply`` (load the source, graft, choose what trains), ``report``.
"""

import logging
import os
from dataclasses import dataclass

from torch import nn

from ... import keys
from ...errors import TransferConfigError, TransferLayerError, did_you_mean
from ...model.layers import Patch
from .source import load_source
from ...transfer import SourceModel, TransferReport, TransferStrategy, parameter_counts, trainable_summary

logger = logging.getLogger(__name__)

METHODS = ("peterrec", "peterzero", "finecls", "finelast", "fineall")
# Table 3 rows, in the paper's order, as scenario arms ("method" or "method/position"), after two
# baselines: popularity (majority label) and a bag-of-items logistic regression.
PATCH_ARMS = ["pop", "bag", "finecls", "finelast", "fineall", "peterrec/serial", "peterrec/parallel", "peterzero/serial"]


@dataclass(frozen=True)
class Backbone:
    """Where things are in a pretrained sequential network (module names relative to the network).

    ``blocks`` is an ``nn.Sequential`` of residual blocks mapping [batch, length, d] to the same shape;
    ``serial`` names the layers inside each block that a serial patch follows; ``layer_norms`` the block
    layer norms that ``patch_layer_norm`` trains; ``unused`` the modules of the pretraining objective that
    the target tasks never run (they are frozen and not counted as trainable).
    """

    embedding: str
    blocks: str
    serial: tuple
    layer_norms: tuple = ()
    unused: tuple = ()


BACKBONES = {
    # RecBole 1.2.1 NextItNet: item_embedding -> residual_blocks (ResidualBlock_b: conv1, ln1, conv2, ln2) ->
    # final_layer (next-item output projection, not used by the target tasks).
    "NextItNet": Backbone("item_embedding", "residual_blocks", ("conv1", "conv2"), ("ln2",), ("final_layer",)),
}


def backbone_of(model_name, configured=None):
    """The declaration of ``model_name``, or the one given by the ``backbone_modules`` key."""
    if configured:
        if not isinstance(configured, dict) or not {"embedding", "blocks", "serial"} <= set(configured):
            raise TransferConfigError(
                f"backbone_modules={configured!r}: expected {{embedding, blocks, serial, layer_norms, unused}}"
            )
        unknown = set(configured) - {"embedding", "blocks", "serial", "layer_norms", "unused"}
        if unknown:
            raise TransferConfigError(f"backbone_modules: unknown key {sorted(unknown)[0]!r}")
        listed = {k: tuple([v] if isinstance(v, str) else v or ()) for k, v in configured.items()}
        return Backbone(configured["embedding"], configured["blocks"], listed["serial"],
                        listed.get("layer_norms", ()), listed.get("unused", ()))
    if model_name not in BACKBONES:
        raise TransferConfigError(
            f"source_model={model_name!r}: no declared blocks to graft patches into (declared: "
            f"{', '.join(BACKBONES)}). Declare them with backbone_modules: {{embedding, blocks, serial}}"
        )
    return BACKBONES[model_name]


def _children_in_state(keys, prefix=""):
    """Immediate child module names under ``prefix`` in a list of state-dict keys."""
    out = []
    for key in keys:
        if key.startswith(prefix):
            head = key[len(prefix):].split(".")[0]
            if head not in out and "." in key[len(prefix):]:
                out.append(head)
    return out


def check_backbone(spec, state_keys, model_name="backbone"):
    """Check a declaration against a network's state-dict keys; returns the block indices.

    Raises TransferLayerError listing the modules that exist when a declared one does not.
    """
    keys = list(state_keys)
    top = _children_in_state(keys)
    for what, name in (("embedding", spec.embedding), ("blocks", spec.blocks)):
        if name not in top:
            raise TransferLayerError(
                f"backbone_modules.{what}={name!r}: not found in {model_name}{did_you_mean(name, top)}; "
                f"its modules: {', '.join(top)}"
            )
    blocks = _children_in_state(keys, spec.blocks + ".")
    if not blocks:
        raise TransferLayerError(f"backbone_modules.blocks={spec.blocks!r}: {model_name}.{spec.blocks} holds no blocks")
    inner = _children_in_state(keys, f"{spec.blocks}.{blocks[0]}.")
    for what, names in (("serial", spec.serial), ("layer_norms", spec.layer_norms)):
        for name in names:
            if name not in inner:
                raise TransferLayerError(
                    f"backbone_modules.{what}: {name!r} is not a layer of block {spec.blocks}.{blocks[0]}"
                    f"{did_you_mean(name, inner)}; available blocks: {spec.blocks}.0..{len(blocks) - 1}, "
                    f"each with layers: {', '.join(inner)}"
                )
    for name in spec.unused:
        if name not in top:
            raise TransferLayerError(f"backbone_modules.unused: {name!r} not found in {model_name}; its modules: {', '.join(top)}")
    return blocks


class SerialPatched(nn.Module):
    """A layer followed by a patch: ``patch(layer(x))``. The layer is kept as ``base``."""

    def __init__(self, base, patch):
        super().__init__()
        self.base = base
        self.patch = patch

    def forward(self, *args, **kwargs):
        return self.patch(self.base(*args, **kwargs))


class ParallelPatched(nn.Module):
    """A residual block with a patch beside it: ``block(x) + W_up GELU(W_down x)``."""

    def __init__(self, base, patch):
        super().__init__()
        self.base = base
        self.patch = patch

    def forward(self, x):
        return self.base(x) + self.patch.branch(x)


def _out_channels(layer):
    """Channels of a layer's output and their dimension, decided by the layer's type."""
    if isinstance(layer, (nn.Conv1d, nn.Conv2d)):
        return layer.out_channels, 1
    if isinstance(layer, nn.Linear):
        return layer.out_features, -1
    raise TransferLayerError(
        f"serial patch: cannot graft after a {type(layer).__name__} (supported: Conv1d, Conv2d, Linear)"
    )


class PatchTransfer(TransferStrategy):
    """Fine-tuning method of a :class:`~recbole_transfer.model.PeterRec` model (see module docstring).

    Args:
        method: one of ``METHODS``.
        position: 'serial' or 'parallel' (patch methods only).
        width: bottleneck width r of every patch.
        layer_norm: also train the declared block layer norms (patch methods only).
    """

    def __init__(self, method="peterrec", position="serial", width=16, layer_norm=False, source_model="NextItNet",
                 backbone_modules=None):
        method = str(method).strip().lower()
        if method not in METHODS:
            raise TransferConfigError(
                f"transfer={method!r}: unknown fine-tuning method for PeterRec{did_you_mean(method, METHODS)}; "
                f"allowed: {', '.join(METHODS)}"
            )
        keys.check({"patch_position": position, "patch_width": width})  # the keys' ranges
        self.method, self.position, self.width, self.layer_norm = method, position, width, bool(layer_norm)
        self.patched = method in ("peterrec", "peterzero")
        self.loads_source = method != "peterzero"
        self.source_model, self.backbone_modules = source_model, backbone_modules
        if self.layer_norm and not self.patched:
            logger.warning("patch_layer_norm=True has no effect with transfer=%r (patch methods only)", method)

    @classmethod
    def from_config(cls, config):
        return cls(config["transfer"], config["patch_position"], config["patch_width"], config["patch_layer_norm"],
                   config["source_model"], config["backbone_modules"])

    @property
    def is_identity(self):
        return False  # every method builds a new head (peterzero: on a network never pretrained)

    @classmethod
    def arm_config(cls, arm):
        """'peterrec/parallel' -> {transfer: peterrec, patch_position: parallel}; 'finecls' -> {transfer: finecls}."""
        method, _, position = str(arm).partition("/")
        return {"transfer": method, "patch_position": position} if position else {"transfer": method}

    @classmethod
    def arm_label(cls, arm):
        overrides = cls.arm_config(arm)
        cls(overrides["transfer"], overrides.get("patch_position", "serial"))
        return str(arm)

    described_keys = ("transfer", "patch_position", "patch_layer_norm")  # the label says them: peterrec/parallel+ln

    @classmethod
    def label_of(cls, params):
        return cls(params.get("transfer", "peterrec"), params.get("patch_position", "serial"),
                   layer_norm=params.get("patch_layer_norm", False)).label

    @property
    def label(self):
        if not self.patched:
            return self.method
        return f"{self.method}/{self.position}" + ("+ln" if self.layer_norm else "")

    # ----- check, then mutate ------------------------------------------------------------------
    def check(self, model, source=None, target=None):
        """Validate the declaration on ``model.backbone`` and, with a source, its keys and shapes. Before the target
        model exists (``model`` None: it is built on the source checkpoint), check the source network alone against
        the declaration of ``source_model``."""
        if model is None:
            if source is not None:
                check_backbone(backbone_of(self.source_model, self.backbone_modules), source.state_dict, self.source_model)
            return
        self._blocks(model, source)

    def _blocks(self, model, source):
        backbone = model.backbone
        if any(isinstance(m, Patch) for m in backbone.modules()):
            raise TransferLayerError("patches: this model already has patches grafted; build a fresh model to apply a method")
        blocks = check_backbone(model.backbone_spec, backbone.state_dict().keys(), type(backbone).__name__)
        width_limit = model.embedding_size
        if self.patched and self.width > width_limit:
            raise TransferConfigError(f"patch_width={self.width}: wider than the network's channels ({width_limit})")
        if source is not None and self.loads_source:
            source_state, own = source.state_dict, backbone.state_dict()
            missing = [k for k in own if k not in source_state]
            if missing:
                raise TransferLayerError(
                    f"source checkpoint: parameter {missing[0]!r} of {type(backbone).__name__} is missing "
                    f"(the checkpoint holds: {', '.join(list(source_state)[:8])}...)"
                )
            for key, value in own.items():
                if tuple(source_state[key].shape) != tuple(value.shape):
                    raise TransferLayerError(
                        f"source checkpoint: {key!r} has shape {tuple(source_state[key].shape)}, the network "
                        f"built from its config has {tuple(value.shape)}"
                    )
        return blocks

    def apply(self, model, source=None, target=None):
        """Check, load the pretrained network (not for peterzero), graft patches, choose what trains."""
        self.require_source(source)
        self._blocks(model, source)
        spec, backbone = model.backbone_spec, model.backbone
        if self.loads_source:
            backbone.load_state_dict(source.state_dict)
        blocks = backbone.get_submodule(spec.blocks)
        patch_modules = []
        if self.patched:
            for index, block in enumerate(list(blocks)):
                if self.position == "serial":
                    for name in spec.serial:
                        layer = block.get_submodule(name)
                        channels, dim = _out_channels(layer)
                        wrapped = SerialPatched(layer, Patch(channels, self.width, dim))
                        setattr(block, name, wrapped)
                        patch_modules.append(wrapped.patch)
                else:
                    wrapped = ParallelPatched(block, Patch(model.embedding_size, self.width, -1))
                    blocks[index] = wrapped
                    patch_modules.append(wrapped.patch)
        for param in model.parameters():
            param.requires_grad_(False)
        trained = [model.head]
        if self.method == "fineall":
            trained.append(backbone)
        elif self.method == "finelast":
            trained.append(blocks[len(blocks) - 1])
        elif self.patched:
            trained += patch_modules
            if self.layer_norm:
                trained += [b.get_submodule(_base_path(b, n)) for b in blocks for n in spec.layer_norms]
        for module in trained:
            for param in module.parameters():
                param.requires_grad_(True)
        for name in spec.unused:  # never run by the target: frozen, not counted
            for param in backbone.get_submodule(name).parameters():
                param.requires_grad_(False)
        return self._report(model, patch_modules)

    def source_keys(self, model):
        """State keys copied from the source and frozen (not in a delta checkpoint)."""
        if not self.loads_source:
            return []
        return [f"backbone.{k}" for k, p in model.backbone.named_parameters() if not p.requires_grad]

    def delta_keys(self, model):
        """State keys a fine-tuned model must save: everything except frozen pretrained weights."""
        frozen = set(self.source_keys(model))
        return [k for k in model.state_dict() if k not in frozen]

    def before_fit(self, trainer):
        """Checkpoints hold a delta over the pretrained source checkpoint."""
        trainer.state_keys = self.delta_keys(trainer.model)
        trainer.extra_state.update(delta_of=os.path.abspath(trainer.config["source_checkpoint"]),
                                   source_keys=self.source_keys(trainer.model))

    def prepare_reload(self, model, checkpoint):
        """A delta checkpoint: rebuild the fine-tuned model on its pretrained source (read once, cached)."""
        if checkpoint.get("delta_of"):
            self.apply(model, SourceModel(load_source(checkpoint["delta_of"]).state_dict))


    # ----- report ------------------------------------------------------------------------------
    def counts(self, model):
        """Trainable parameter counts: all, the head, and the rest (what the method adds or unfreezes)."""
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        head = sum(p.numel() for p in model.head.parameters())
        patches = {id(p) for m in model.backbone.modules() if isinstance(m, Patch) for p in m.parameters()}
        backbone = sum(
            p.numel() for n, p in model.backbone.named_parameters()
            if not _in_unused(n, model.backbone_spec) and id(p) not in patches
        )
        return {"trainable": trainable, "all": parameter_counts(model)["all"], "head": head,
                "trainable_no_head": trainable - head, "network": backbone}

    def _report(self, model, patch_modules):
        patch_ids = {id(p) for m in patch_modules for p in m.parameters()}
        source = set(self.source_keys(model))
        rows = []
        for name, param in model.named_parameters():
            if id(param) in patch_ids:
                action = "grafted patch, trained"
            elif name.startswith("head."):
                action = "new head, trained"
            elif _in_unused(name[len("backbone."):], model.backbone_spec) and name.startswith("backbone."):
                action = "unused by the task, frozen"
            elif name in source:
                action = "pretrained, frozen"
            elif name.startswith("backbone."):
                origin = "pretrained" if self.loads_source else "random (no pretraining)"
                action = f"{origin}, {'trained' if param.requires_grad else 'frozen'}"
            else:
                action = "trained" if param.requires_grad else "frozen"
            rows.append((name, tuple(param.shape), action))
        c = self.counts(model)
        summary = (
            trainable_summary(model) + f"\nwithout the head: {c['trainable_no_head']:,} trainable = "
            f"{100.0 * c['trainable_no_head'] / max(c['network'], 1):.2f}% of the pretrained network ({c['network']:,})"
        )
        return TransferReport(f"transfer: {self.label}", rows, summary, c)

def _in_unused(name, spec):
    return any(name == u or name.startswith(u + ".") for u in spec.unused)


def _base_path(block, name):
    """A layer's path inside a block, whether the block is wrapped (parallel) or not."""
    return f"base.{name}" if isinstance(block, ParallelPatched) else name
