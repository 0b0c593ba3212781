"""The method registry: one :class:`Method` per transfer method, the only place shared code learns about methods.

A method lives in a folder of its own (``recbole_transfer/methods/<name>/``, or any package outside this one)
and registers a :class:`Method` with :func:`register`::

    from recbole_transfer.registry import Method, register

    register(Method(name="my_method", models={"MyModel": MyModel}, strategy=MyStrategy, runner=TwoStageRunner(),
                    folder=os.path.dirname(__file__), arms=["none", "mine"]))

or, as a decorator of the strategy class, ``@method("my_method", models={...}, runner=TwoStageRunner(), ...)``.

The shared floors (the CLI, the runners, the scenario tables, the Ray Tune driver, the config) ask the
registry — :func:`method_of` a model name, :func:`default_method` — and never name a method.

Discovery: the methods shipped in :mod:`recbole_transfer.methods`, then every entry point of the group
``recbole_transfer.methods`` (``[options.entry_points] recbole_transfer.methods = mine = my_pkg.method``): the
named module is imported, and importing it registers its Method. Discovery runs once, on the first question;
it imports method modules with :mod:`importlib` (a plugin mechanism, not a module-level import), so the
method packages may import every shared module without a circle.

A model that no method declares (any RecBole model: NeuMF, DMF, ...) belongs to the default method (the one
registered with ``default=True``): RecBole's models take part in the default method.
"""

import importlib
import logging
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata

from .errors import TransferConfigError, did_you_mean

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "recbole_transfer.methods"
BUILTIN_PACKAGE = "recbole_transfer.methods"

_METHODS = {}  # name -> Method, in registration order
_STATE = {"discovered": False, "discovering": False}


@dataclass
class Method:
    """What the shared floors need to know about one transfer method.

    Attributes:
        name: the method's name (folder name, ``--method`` in tables and errors).
        models: {model name: RecBole model class} the method ships (resolved before RecBole's own models).
        strategy: a :class:`~recbole_transfer.transfer.base.TransferStrategy` subclass (built with
            ``strategy.from_config(config)``), or None for a method that transfers no weights between domains.
        runner: a :class:`~recbole_transfer.pipeline.base.Runner`: two-stage (source -> target) or periodic.
        folder: the folder of the method's YAML files: ``keys.yaml`` (the method's keys, every one commented),
            ``<Model>.yaml`` (a model's defaults), ``scenario.yaml`` (its default scenario) and ``space.yaml``
            (its default Ray Tune search space). A missing file means "none".
        arms: the arms of its scenario, in table order (values of ``transfer``, or ``method/option`` labels the
            strategy understands); the first is the baseline every other arm is paired with, unless
            ``baseline`` names another.
        baseline: the arm tables pair with (default: the first of ``arms``).
        baseline_models: {arm: model name}: arms that train another model on the target alone (a baseline
            beside the transfer arms, e.g. popularity).
        controls: arms that are neither a baseline nor a transfer (e.g. frozen random modules, a control): their rows
            have kind ``control``; tables show them, the best-transfer vs best-baseline picks never choose them.
        tables: ``tables(rows, metrics) -> (Markdown text, metric of the forest plot or None)``: the result
            table of a scenario. None: the runner's default.
        analyses: {CLI flag: ``f(config, model, valid_data) -> text``}: analyses of a trained checkpoint the
            method offers (e.g. ``importance``).
        default: the method of models no method declares (exactly one registered method is the default).
        description: one line for ``--help`` and error messages.
        module: the module that registered the method (set by :func:`register`); a Ray worker imports it to
            find the method again.
        data_keys: the method's keys that change the data a run is scored on (e.g. its protocol): a search space
            may not vary them (every trial of a search is scored on the same data).
    """

    name: str
    models: dict
    strategy: type = None
    runner: object = None
    folder: str = None
    arms: list = field(default_factory=list)
    baseline: str = None
    baseline_models: dict = field(default_factory=dict)
    controls: tuple = ()
    tables: object = None
    analyses: dict = field(default_factory=dict)
    default: bool = False
    description: str = ""
    module: str = None
    data_keys: frozenset = frozenset()

    def __reduce_ex__(self, protocol):
        """A registered method travels (to a Ray task) as its name and module: the receiving process's registered
        method (a copy is the method itself). One that is not registered pickles and copies field by field."""
        if _METHODS.get(self.name) is self:
            return (load, (self.name, self.module))
        return super().__reduce_ex__(protocol)

    def file(self, name):
        """Absolute path of a YAML file of the method's folder, or None when the method has none."""
        if not self.folder:
            return None
        path = os.path.join(self.folder, name)
        return path if os.path.isfile(path) else None

    @property
    def scenario(self):
        """The method's default scenario file (its domains, source, targets and model), or None."""
        return self.file("scenario.yaml")

    @property
    def space(self):
        """The method's default search space, or None."""
        return self.file("space.yaml")

    @property
    def keys_file(self):
        return self.file("keys.yaml")

    def model_file(self, model):
        return self.file(f"{model}.yaml")

    @property
    def baseline_arm(self):
        return self.baseline or (self.arms[0] if self.arms else None)

    def is_baseline(self, params):
        """True for a trial configuration (config keys) that is the method's baseline arm (searches never stop it
        early; a transfer must beat it by the margin). False for every configuration of a method without one."""
        if self.strategy is None or self.baseline_arm is None:
            return False
        return self.strategy.label_of(params) == self.strategy.label_of(self.strategy.arm_config(self.baseline_arm))

    def baseline_trial(self):
        """The config keys of the baseline arm (added to a search space that has no baseline trial), or None."""
        if self.strategy is None or self.baseline_arm is None:
            return None
        return dict(self.strategy.arm_config(self.baseline_arm))

    def describe(self, params):
        """Short text of a trial configuration (the strategy's, else ``key=value, ...``)."""
        if self.strategy is not None:
            return self.strategy.describe(params)
        return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))

    def make_strategy(self, config):
        """The method's strategy for ``config`` (validated); None for a method without one, and for a baseline model
        of the method (it trains on the target alone)."""
        if self.strategy is None or config["model"] in self.baseline_models.values():
            return None
        other = owner_of_arm(self, config["transfer"])
        if other is not None:  # another method's arm: this strategy could misread it (as a layer name, say)
            raise TransferConfigError(
                f"transfer={config['transfer']!r}: a transfer of method {other.name!r}; use --model={next(iter(other.models))}, "
                f"or an arm of method {self.name!r} ({', '.join(self.arms)}) for {config['model']}"
            )
        return self.strategy.from_config(config)


def owner_of_arm(method, value):
    """The other registered method whose declared arm ``value`` (a ``transfer`` key) is, or None."""
    if not isinstance(value, str):
        return None
    arm = value.strip().lower()
    if arm == "none":  # no transfer: every method's baseline, nobody's own
        return None
    names = lambda m: {a.lower() for a in m.arms} | {a.lower().partition("/")[0] for a in m.arms}  # noqa: E731
    if arm in names(method):
        return None
    for other in methods():
        if other is method or other.strategy is None or arm not in names(other):
            continue
        try:
            other.strategy.arm_label(arm)  # a transfer arm of that method, not one of its baselines (pop, bag)
        except TransferConfigError:
            continue
        return other
    return None


def register(method):
    """Add ``method`` to the registry (also usable as ``register(Method(...))`` at a module's import). Returns it.

    Raises TransferConfigError when its name or one of its model names is already taken by another method."""
    if not isinstance(method, Method):
        raise TypeError(f"register() takes a Method, got {type(method).__name__}")
    if method.module is None:
        method.module = sys._getframe(1).f_globals.get("__name__")
    old = _METHODS.get(method.name)
    if old is not None and old is not method and old.folder != method.folder:
        raise TransferConfigError(f"method {method.name!r} is registered twice ({old.folder} and {method.folder})")
    for other in _METHODS.values():
        if other.name == method.name:
            continue
        taken = set(other.models) & set(method.models)
        if taken:
            raise TransferConfigError(f"method {method.name!r}: model {sorted(taken)[0]!r} already belongs to {other.name!r}")
        if other.default and method.default:
            raise TransferConfigError(f"method {method.name!r}: {other.name!r} is already the default method")
    _METHODS[method.name] = method
    return method


def method(name, **fields):
    """Class decorator: register the decorated :class:`~recbole_transfer.transfer.base.TransferStrategy` as the
    strategy of a new method ``name`` (the other :class:`Method` fields as keywords). Returns the class."""

    def decorate(strategy):
        register(Method(name=name, strategy=strategy, module=strategy.__module__, **fields))
        return strategy

    return decorate


def load(name, module=None):
    """The method ``name``, importing ``module`` first (a Ray worker finds a method registered outside the
    package this way)."""
    if module and name not in _METHODS:
        importlib.import_module(module)
    return get_method(name)


def unregister(name):
    """Remove a method (tests register small methods and take them out again)."""
    _METHODS.pop(name, None)


def _discover():
    if _STATE["discovered"] or _STATE["discovering"]:
        return
    _STATE["discovering"] = True
    try:
        importlib.import_module(BUILTIN_PACKAGE)
        for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                importlib.import_module(entry.value.split(":")[0])
            except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the others
                logger.warning("method plugin %r (%s) failed to load: %s", entry.name, entry.value, exc)
        _STATE["discovered"] = True
    finally:
        _STATE["discovering"] = False


def methods():
    """Every registered method, in registration order."""
    _discover()
    return list(_METHODS.values())


def get_method(name):
    """The method called ``name``; TransferConfigError with the closest names otherwise."""
    _discover()
    if name not in _METHODS:
        raise TransferConfigError(f"method {name!r}: unknown{did_you_mean(str(name), _METHODS)}; registered: {', '.join(_METHODS)}")
    return _METHODS[name]


def default_method():
    """The method of every model that no method declares."""
    found = [m for m in methods() if m.default]
    if not found:
        raise TransferConfigError("no default method is registered")
    return found[0]


def model_classes():
    """{model name: class} of every registered method's models."""
    return {name: cls for m in methods() for name, cls in m.models.items()}


def model_file(model):
    """The defaults file of a model: ``<Model>.yaml`` in its method's folder, else in the folder of a method that
    configures a model it does not own (a source network it pretrains, a RecBole model), else None."""
    owner = method_of(model)
    for method in [owner] + [m for m in methods() if m is not owner]:
        if method.model_file(model):
            return method.model_file(model)
    return None


def method_of(model):
    """The method a model name (or class) belongs to: the method that declares it, else the default method."""
    name = model if isinstance(model, str) or model is None else getattr(model, "__name__", str(model))
    for method in methods():
        if name in method.models:
            return method
    return default_method()
