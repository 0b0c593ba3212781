"""Layer groups: the names a transfer spec can use, for our models and RecBole's.

A model's *transfer containers* are the modules that hold its interaction function. The k-th
``nn.Linear`` found (in registration order) inside each container forms the layer group ``fc<k>``;
a two-tower model such as DMF contributes one Linear per tower to each group. The paper's seven
configurations are lists of such groups. Any named submodule (``mlp_layers.mlp_layers.4``) can be
named directly as well.

Where the containers come from, first match wins: the ``transfer_containers`` config key, the
model class attribute ``transfer_containers``, the built-in table below for RecBole models.
"""

from collections import OrderedDict

from torch import nn

from ..errors import TransferConfigError, TransferLayerError, did_you_mean

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
NO_TRANSFER = "none"
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
