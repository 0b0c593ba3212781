"""A request: what one command asks for, resolved once.

Every entry point (the command line, a scenario, a Ray Tune trial, a benchmark, a Python call) builds one
:class:`Request`: the model, its method, the source, the targets, the config files and the user's keys, and from them
the run's resolved keys (:func:`recbole_transfer.keys.resolve`: RecBole's and the plugin's defaults, the files, the
keys), checked once (:func:`recbole_transfer.keys.check`). Runners read ``request.keys``, ``request.targets``,
``request.seed`` and ``request.data_seed``; none builds a config only to read a key. A domain's config (a
:class:`~recbole_transfer.config.TransferConfig` with that domain's dataset defaults) comes from
:meth:`Request.config`. A request is frozen: :meth:`Request.with_keys` gives another one (an arm's keys, a seed).
"""

import os
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from . import keys as key_files
from . import registry
from .config import TransferConfig
from .data.domains import check_domain, resolve_domain
from .errors import TransferConfigError
from .utils import listish


def _frozen(value):
    return MappingProxyType(dict(value or {}))


@dataclass(frozen=True)
class Request:
    """See the module docstring. ``Request(model, source, targets, config_files, config_dict)`` resolves the keys;
    ``model`` None: the user's ``model`` key, else that of the default method's scenario."""

    model: str = None
    source: str = None
    targets: tuple = None
    config_files: tuple = ()
    config_dict: object = field(default_factory=dict)
    keys: object = field(default=None, compare=False, repr=False)

    def __post_init__(self):
        files = tuple(os.path.abspath(str(p)) for p in self.config_files or ())
        given = dict(self.config_dict or {})
        read = [key_files.read_yaml(p) for p in files]  # one-line errors for a missing or malformed file
        model = self.model or given.get("model") or next((d["model"] for d in reversed(read) if d.get("model")), None)
        if model is None:
            model = key_files.read_yaml(registry.default_method().scenario)["model"]
        model = model if isinstance(model, str) else getattr(model, "__name__", str(model))
        given = key_files.normalize(given, model)  # a list key written as "a,b": a list
        resolved = key_files.resolve(model, files, given)
        resolved["model"] = model
        key_files.check({k: v for k, v in resolved.items() if k in _user_keys(read, given)}, model)
        targets = self.targets if self.targets else listish(resolved.get("targets"))
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 - a frozen dataclass
        set_("model", model)
        set_("source", self.source or resolved.get("source"))
        set_("targets", tuple(str(t) for t in targets or ()))
        set_("config_files", files)
        set_("config_dict", _frozen(given))
        set_("keys", _frozen(resolved))

    # ----- what runners read ------------------------------------------------------------------------
    @property
    def method(self):
        return registry.method_of(self.model)

    @property
    def seed(self):
        return int(self.keys["seed"])

    @property
    def data_seed(self):
        return key_files.data_seed_of(self.keys)

    @property
    def target(self):
        """The first target, or None."""
        return self.targets[0] if self.targets else None

    def require_targets(self):
        if not self.targets:
            raise TransferConfigError("targets: no target domain given (--target=<name> or a 'targets:' list)")
        return list(self.targets)

    def require_source(self):
        if not self.source:
            raise TransferConfigError("source: no source domain given (--source=<name> or a 'source:' key)")
        return self.source

    # ----- new requests -----------------------------------------------------------------------------
    def with_keys(self, **extra):
        """The same request with ``extra`` keys over the user's (an arm, a trial, a seed); ``model=...`` switches the
        model (its layers are resolved anew)."""
        model = extra.pop("model", self.model)
        return replace(self, model=model, config_dict=key_files.layered(self.config_dict, extra), keys=None)

    def for_target(self, target):
        return replace(self, targets=(target,), keys=None)

    # ----- configs -----------------------------------------------------------------------------------
    def config(self, name, key="dataset", overrides=None):
        """The TransferConfig of domain ``name`` (a dataset, or a derived domain, written on first use)."""
        return domain_config(self.model, name, list(self.config_files), dict(self.config_dict), key=key, overrides=overrides)

    def check_domains(self, names, key="targets"):
        """Fail in seconds, before any training, when a dataset or domain name does not exist (with the closest
        declared domain), or a declared domain's spec is bad."""
        for name in names:
            check_domain(name, self.keys.get("data_path") or "dataset/", self.keys["domains"], key)

    @classmethod
    def command(cls, model=None, source=None, targets=None, config_files=(), config_dict=None):
        """A command line's request: the model's method's default scenario files first (its runner says which), then
        the user's files and keys."""
        probe = cls(model, source, targets, config_files, config_dict)
        method = probe.method
        files = [os.path.abspath(p) for p in method.runner.scenario_files(method, probe.model)] + list(probe.config_files)
        return cls(probe.model, source, targets, files, config_dict)


def domain_config(model, name, config_file_list=None, config_dict=None, key="dataset", overrides=None):
    """A TransferConfig of ``model`` for a dataset or a derived domain (derived domains are written on first use)."""
    if name is None:
        raise TransferConfigError(f"{key}: no dataset or domain given")
    config_dict = dict(config_dict or {})
    resolved = key_files.resolve(model, config_file_list, config_dict)
    dataset, path, extra = resolve_domain(name, config_dict, resolved.get("data_path") or "dataset/",
                                          resolved["domain_cache_dir"], resolved["domains"], key)
    merged = {**key_files.layered(key_files.layered(extra, config_dict), overrides or {}), "data_path": os.path.abspath(path)}
    return TransferConfig(model, dataset, config_file_list, merged)


def _user_keys(read, given):
    """The keys a user (or a scenario file) set: what the check covers (the shipped defaults are checked by a test)."""
    names = set(given)
    for data in read:
        names |= set(data)
    return names
