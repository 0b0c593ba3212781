"""Layer transfer (Nguyen et al. 2020): copy named layers of a source MLP recommender, freeze or fine-tune them.

Layer groups: the names a transfer spec can use, for our models and RecBole's.

A model's *transfer containers* are the modules that hold its interaction function. The k-th
``nn.Linear`` found (in registration order) inside each container forms the layer group ``fc<k>``;
a two-tower model such as DMF contributes one Linear per tower to each group. The paper's seven
configurations are lists of such groups. Any named submodule (``mlp_layers.mlp_layers.4``) can be
named directly as well.

Where the containers come from, first match wins: the ``transfer_containers`` config key, the
model class attribute ``transfer_containers``, the built-in table below for RecBole models.
"""

from collections import OrderedDict

import torch
from torch import nn

from ...errors import TransferConfigError, TransferLayerError, did_you_mean
from ...transfer import NO_TRANSFER, TransferReport, TransferStrategy, parameter_counts, trainable_summary

# RecBole models whose interaction function we know (module names in RecBole 1.2.1).
RECBOLE_CONTAINERS = {
    "NeuMF": ("mlp_layers",),  # the MLP part; MF embeddings and predict_layer stay domain-specific
    "DMF": ("user_fc_layers", "item_fc_layers"),
}

# Table 1 of the paper: which FC layers are transferred (and frozen) in each configuration.
PAPER_CONFIGS = OrderedDict(
    [
        ("config-1", ["fc1", "fc2", "fc3", "fc4"]),
        ("config-2", ["fc1", "fc2", "fc3"]),
        ("config-3", ["fc1", "fc2"]),
        ("config-4", ["fc1"]),
        ("config-5", ["fc2", "fc3", "fc4"]),
        ("config-6", ["fc3", "fc4"]),
        ("config-7", ["fc4"]),
    ]
)
ARMS = [NO_TRANSFER] + list(PAPER_CONFIGS)


def containers_of(model, configured=None):
    """Names of the modules that hold the model's transferable interaction function."""
    if configured:
        return tuple([configured] if isinstance(configured, str) else configured)
    declared = getattr(type(model), "transfer_containers", None)
    if declared:
        return tuple(declared)
    return RECBOLE_CONTAINERS.get(type(model).__name__, ())


def layer_groups(model, configured=None):
    """OrderedDict ``fc1 -> [module names]`` for the model's containers."""
    modules = dict(model.named_modules())
    containers = containers_of(model, configured)
    per_container = []
    for name in containers:
        if name not in modules:
            raise TransferConfigError(
                f"transfer_containers: module {name!r} not found in {type(model).__name__}"
                f"{did_you_mean(name, modules)}; top-level modules: {', '.join(n for n, _ in model.named_children())}"
            )
        linears = [
            f"{name}.{sub}" for sub, module in modules[name].named_modules() if isinstance(module, nn.Linear) and sub
        ]
        per_container.append(linears)
    groups = OrderedDict()
    for linears in per_container:
        for k, module_name in enumerate(linears, start=1):
            groups.setdefault(f"fc{k}", []).append(module_name)
    return groups


def parse_transfer(value):
    """Normalise the ``transfer`` key: returns (label, [names]) where names are groups or modules."""
    if value is None or value == [] or (isinstance(value, str) and value.strip().lower() in ("none", "")):
        return NO_TRANSFER, []
    if isinstance(value, str):
        key = value.strip().lower()
        if key in PAPER_CONFIGS:
            return key, list(PAPER_CONFIGS[key])
        if key.startswith("config"):
            raise TransferConfigError(
                f"transfer={value!r}: unknown configuration{did_you_mean(key, PAPER_CONFIGS)}; "
                f"allowed: none, {', '.join(PAPER_CONFIGS)}, or a list of layers"
            )
        names = [v.strip("'\"") for v in value.strip().strip("[]").replace(",", " ").split() if v.strip("'\"")]
        return ",".join(names), names
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return ",".join(value), list(value)
    raise TransferConfigError(
        f"transfer={value!r}: expected 'none', one of {', '.join(PAPER_CONFIGS)}, or a list of layer names"
    )


def resolve_layers(model, names, configured=None):
    """Map group names and module names to a sorted list of module names of ``model``.

    Raises TransferLayerError listing what exists when a name matches nothing.
    """
    groups = layer_groups(model, configured)
    modules = {n: m for n, m in model.named_modules() if n and any(True for _ in m.parameters(recurse=False))}
    resolved = []
    for name in names:
        if name in groups:
            resolved.extend(groups[name])
        elif name in modules:
            resolved.append(name)
        else:
            raise TransferLayerError(
                f"transfer: layer {name!r} not found in {type(model).__name__}"
                f"{did_you_mean(name, list(groups) + list(modules))}. "
                f"Layer groups: {', '.join(f'{g}={m}' for g, m in groups.items()) or 'none declared'}. "
                f"Modules with parameters: {', '.join(modules)}"
            )
    return list(dict.fromkeys(resolved))


MODES = ("freeze", "finetune")


class LayerTransfer(TransferStrategy):
    """Copy named layers from a source state dict into a target model; freeze or fine-tune them.

    Args:
        transfer: 'none', 'config-1'..'config-7', or a list of layer groups / module names.
        mode: 'freeze' (paper) or 'finetune'.
        containers: optional override of the model's transfer containers.
    """

    def __init__(self, transfer=NO_TRANSFER, mode="freeze", containers=None):
        if mode not in MODES:
            raise TransferConfigError(f"transfer_mode={mode!r}: allowed values are 'freeze' and 'finetune'")
        self.label, self.names = parse_transfer(transfer)
        self.mode = self.variant = mode  # freeze / finetune, shown beside the arm
        self.containers = containers

    @classmethod
    def from_config(cls, config):
        return cls(config["transfer"], config["transfer_mode"], config["transfer_containers"])

    @property
    def loads_source(self):
        return bool(self.names)

    @classmethod
    def arm_label(cls, arm):
        return parse_transfer(arm)[0]

    described_keys = ("transfer", "transfer_mode")

    @classmethod
    def label_words(cls, params):
        """``config-3 freeze``: the arm, and its mode when it transfers."""
        label = cls.label_of(params)
        return [label] + ([str(params["transfer_mode"])] if label != NO_TRANSFER and "transfer_mode" in params else [])

    @staticmethod
    def _param_pairs(model, modules):
        for module_name in modules:
            for pname, param in model.get_submodule(module_name).named_parameters():
                yield f"{module_name}.{pname}", param

    def check(self, model, source=None, target=None):
        """Resolve names on ``model``; with a source, compare shapes; with both domains' id tokens, a transferred
        ``nn.Embedding`` whose row count is that of an id field must index the same tokens in both domains (an
        embedding table only means something in the id space it was trained in). Touches nothing."""
        self._checked_modules(model, source, target)

    def _checked_modules(self, model, source, target):
        modules = resolve_layers(model, self.names, self.containers)
        if source is not None and target is not None and source.id_tokens:
            self._check_id_spaces(model, modules, source.id_tokens, target.id_tokens())
        if source is None:
            return modules
        for full_name, param in self._param_pairs(model, modules):
            if full_name not in source.state_dict:
                raise TransferLayerError(
                    f"transfer: parameter {full_name!r} is missing from the source model "
                    f"(source parameters: {', '.join(source.state_dict)})"
                )
            src_shape = tuple(source.state_dict[full_name].shape)
            if src_shape != tuple(param.shape):
                raise TransferLayerError(
                    f"transfer: layer {full_name!r} has shape {src_shape} in the source but "
                    f"{tuple(param.shape)} in the target; transferred layers must have equal shapes"
                )
        return modules

    @staticmethod
    def _check_id_spaces(model, modules, source_ids, target_ids):
        for module_name in modules:
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

    def apply(self, model, source=None, target=None):
        """Check, copy, then freeze (or keep trainable) the layers."""
        self.require_source(source)
        modules = self._checked_modules(model, source, target)
        moved = set()
        with torch.no_grad():
            for full_name, param in self._param_pairs(model, modules):
                param.copy_(source.state_dict[full_name].to(param.device))
                param.requires_grad_(self.mode != "freeze")
                moved.add(full_name)
        rows = []
        for name, param in model.named_parameters():
            if name in moved:
                action = "copied, frozen" if self.mode == "freeze" else "copied, fine-tuned"
            else:
                action = "initialised, trained"
            rows.append((name, tuple(param.shape), action))
        return TransferReport(f"transfer: {self.label} ({self.mode})", rows, trainable_summary(model),
                              parameter_counts(model))
