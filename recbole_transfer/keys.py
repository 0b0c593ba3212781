"""The keys of a run: the YAML files that declare them, how they are layered, and the one check of their values.

Every key recbole_transfer declares (``properties/overall.yaml``, each method's ``keys.yaml`` and model files) is
commented in RecBole's style, and the comment is read, not only shown::

    epochs: 300      # (int) Epochs of the target stage. Range in [1, inf).
    protocol: warm   # (str) ... Range in ['warm', 'cold_start'].
    eta: 1.0         # (float) ... Range in (0, 1].

The type in parentheses is ``int``, ``float``, ``str``, ``bool``, ``list``, ``dict`` or ``list of <type>``, and
alternatives joined by ``or`` (``int or None``). ``Range in`` is an interval (``[`` / ``]`` include the bound,
``(`` / ``)`` exclude it, ``inf`` for none) or a list of allowed values. ``properties/recbole_checks.yaml`` annotates
the RecBole keys that are checked the same way (that file only annotates: RecBole's own defaults stay in effect).

:func:`check` is the only check of a key's type and range: a config checks its keys with it when it is built, and
so does a request (:mod:`recbole_transfer.request`) before anything is read or trained. :func:`resolve` layers a
run's keys as :class:`~recbole_transfer.config.TransferConfig` does, without a dataset: what a command reads before a
domain is chosen (source, targets, seeds, scenario keys).
"""

import copy
import functools
import glob
import os
import re
from dataclasses import dataclass

import yaml

from . import registry
from .errors import TransferConfigError, did_you_mean
from recbole.config import Config
from recbole.utils import argument_list

from .utils import PROPERTIES_DIR, RECBOLE_DIR, property_file

RECBOLE_PROPERTIES = os.path.join(RECBOLE_DIR, "properties")
LOADER = Config._build_yaml_loader(None)  # RecBole's YAML loader (``1e-3`` is a float), as its Config reads files
CHECKS_FILE = "recbole_checks.yaml"  # annotations of RecBole's keys; never layered into a config
SCALARS = {"int", "float", "str", "bool", "list", "dict", "None"}
_LINE = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)\s*:[^#]*#\s*\(([^)]*)\)(.*)$")
_INTERVAL = re.compile(r"Range in\s*([\[(])\s*([^,\])]+?)\s*,\s*([^\])]+?)\s*([\])])")
_CHOICES = re.compile(r"Range in\s*\[((?:\s*'[^']*'\s*,?)+)\]")


@dataclass(frozen=True)
class Annotation:
    """A key's declared type and range, read from the comment of its YAML line."""

    key: str
    types: tuple  # alternatives: 'int', 'float', 'str', 'bool', 'list', 'dict', 'None', or ('list', element type)
    low: float = None
    high: float = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = None
    where: str = ""

    def want(self):
        """What the key must be, in words (the error message's end)."""
        names = {"int": "an integer", "float": "a number", "str": "a string", "bool": "True or False", "list": "a list",
                 "dict": "a mapping", "None": "None"}
        plural = {"int": "integers", "float": "numbers", "str": "strings", "bool": "booleans", "list": "lists",
                  "dict": "mappings", "None": "Nones"}
        kinds = [names[t] if isinstance(t, str) else f"a list of {plural[t[1]]}" for t in self.types]
        if self.choices is not None:
            allowed = f"one of {', '.join(self.choices)}"
            kinds = [allowed if k == "a string" else f"{k} ({allowed})" if k.startswith("a list") else k for k in kinds]
        elif self.low is not None or self.high is not None:
            if self.high is None:
                bound = f"{'>' if self.low_open else '>='} {self.low:g}"
            elif self.low is None:
                bound = f"{'<' if self.high_open else '<='} {self.high:g}"
            else:
                bound = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
            kinds = [f"{k} {bound}" if k in ("an integer", "a number") else f"{k} ({bound})" if k.startswith("a list")
                     else k for k in kinds]
        return " or ".join(kinds)

    def accepts(self, value):
        return any(_fits(kind, value, self) for kind in self.types)


def _number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _in_range(value, note):
    if note.choices is not None:
        return value in note.choices
    if value != value:  # NaN: in no range (it compares false with every bound)
        return False
    if value in (float("inf"), float("-inf")):  # only where the range writes that end closed: [0, inf]
        return (note.high is None and not note.high_open) if value > 0 else (note.low is None and not note.low_open)
    if note.low is not None and (value < note.low or (note.low_open and value == note.low)):
        return False
    if note.high is not None and (value > note.high or (note.high_open and value == note.high)):
        return False
    return True


def _fits(kind, value, note):
    if isinstance(kind, tuple):  # ('list', element type)
        return isinstance(value, (list, tuple)) and all(_fits(kind[1], v, note) for v in value)
    if kind == "None":
        return value is None
    if kind == "int":  # 2.0 is not an integer: torch and RecBole fail on it far from here
        return isinstance(value, int) and not isinstance(value, bool) and _in_range(value, note)
    if kind == "float":
        return _number(value) and _in_range(value, note)
    if kind == "str":
        return isinstance(value, str) and (note.choices is None or value in note.choices)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "list":
        return isinstance(value, (list, tuple))
    return isinstance(value, dict)


def parse_annotation(key, text, where=""):
    """The :class:`Annotation` of ``key`` from ``text``, its comment after ``# (``; errors name the file."""
    match = re.match(r"\s*\(([^)]*)\)(.*)$", text)
    if not match:
        return None
    types = []
    for part in match.group(1).split(" or "):
        words = part.strip().split()
        if len(words) == 3 and words[:2] == ["list", "of"] and words[2] in SCALARS:
            types.append(("list", words[2]))
        elif len(words) == 1 and words[0] in SCALARS:
            types.append(words[0])
        else:
            raise TransferConfigError(f"{where}: key {key!r} has an unreadable type annotation ({match.group(1)!r})")
    rest = match.group(2)
    fields = {}
    choices = _CHOICES.search(rest)
    interval = _INTERVAL.search(rest)
    if choices:
        fields["choices"] = tuple(re.findall(r"'([^']*)'", choices.group(1)))
    elif interval:
        opening, low, high, closing = interval.groups()
        try:
            fields.update(low=None if low.strip() in ("-inf", "inf") else float(low),
                          high=None if high.strip() == "inf" else float(high),
                          low_open=opening == "(", high_open=closing == ")")
        except ValueError:
            raise TransferConfigError(f"{where}: key {key!r}: range {interval.group(0)!r} is not numeric") from None
    elif "Range in" in rest:
        raise TransferConfigError(f"{where}: key {key!r}: unreadable range ({rest.strip()!r})")
    return Annotation(key, tuple(types), where=where, **fields)


@functools.lru_cache(maxsize=None)
def file_annotations(path):
    """{key: Annotation} of the top-level keys of one YAML file that carry a ``# (type)`` comment."""
    notes = {}
    with open(path, "r", encoding="utf-8") as f:
        for line in f:
            match = _LINE.match(line.rstrip("\n"))
            if match:
                key = match.group(1)
                where = os.path.relpath(path, os.path.dirname(os.path.dirname(path)))  # <folder>/<file>.yaml
                notes[key] = parse_annotation(key, f"({match.group(2)}){match.group(3)}", where)
    return notes


def declared_files():
    """Every YAML file whose annotations are checked: the package's properties, then every registered method's files."""
    files = sorted(glob.glob(os.path.join(PROPERTIES_DIR, "**", "*.yaml"), recursive=True))
    for method in registry.methods():
        files += method_files(method)
    return files


def method_files(method):
    """A method's config files: its keys and its models' defaults (not its scenarios, search space or leaderboard)."""
    if not method.folder:
        return []
    files = sorted(glob.glob(os.path.join(method.folder, "*.yaml")))
    return [p for p in files if not os.path.basename(p).startswith(("scenario", "space", "leaderboard"))]


def annotations(model=None):
    """{key: Annotation} that apply to a run of ``model``: the shared files' (``properties/overall.yaml`` and RecBole's
    keys in ``recbole_checks.yaml``), then the files ``model`` layers (its method's ``keys.yaml``, its own file), which
    win. A key of another method means nothing to this model (its config warns about it) and is not checked. Without
    a model: every declared file's, the first annotation of a key winning (for tools that list keys)."""
    if model is None:
        return dict(_annotations(tuple(declared_files())))
    files = [property_file(CHECKS_FILE), property_file("overall.yaml")] + layers(model)
    return dict(_annotations(tuple(reversed(files))))


@functools.lru_cache(maxsize=None)
def _annotations(files):
    notes = {}
    for path in files:
        for key, note in file_annotations(path).items():
            notes.setdefault(key, note)
    return notes


# ----- the names of the keys (a misspelling of one of ours is an error with a hint) ----------------------------
# Keys RecBole reads that are not in any of its property files.
_RECBOLE_RUNTIME_KEYS = {
    "model", "dataset", "data_path", "config_files", "local_rank", "nproc", "world_size", "ip", "port",
    "offset", "single_spec", "device", "MODEL_TYPE", "MODEL_INPUT_TYPE", "eval_type", "shuffle",
    "gpu_id", "benchmark_filename", "valid_neg_sample_args", "test_neg_sample_args", "neg_sampling",
    "additional_feat_suffix", "numerical_features", "discretization", "preload_weight", "alias_of_user_id",
    "alias_of_item_id", "alias_of_entity_id", "alias_of_relation_id", "normalize_field", "normalize_all",
    "threshold", "unload_col", "unused_col", "load_col", "rm_dup_inter", "val_interval",
    "filter_inter_by_user_or_item", "user_inter_num_interval", "item_inter_num_interval",
    "transform", "enable_amp", "enable_scaler", "wandb_project", "log_wandb", "state", "show_progress",
    "save_dataset", "dataset_save_path", "save_dataloaders", "dataloaders_save_path", "log_tensorboard",
    "worker", "checkpoint_dir", "seed", "reproducibility", "use_gpu",
}


@functools.lru_cache(maxsize=None)
def _yaml_keys(path):
    """The top-level keys of a shipped YAML file (read once: every config checks its keys against them)."""
    return frozenset(read_yaml(path))


def plugin_keys():
    """Every key declared by this package's property files and the registered methods' files (our keys)."""
    return _plugin_keys(tuple((m.name, m.folder) for m in registry.methods()))


@functools.lru_cache(maxsize=None)
def _plugin_keys(_registered):
    keys = set()
    for path in glob.glob(os.path.join(PROPERTIES_DIR, "**", "*.yaml"), recursive=True):
        if os.path.basename(path) != CHECKS_FILE:  # RecBole's keys: a typo of one is a warning, as RecBole's own
            keys |= _yaml_keys(path)
    for method in registry.methods():
        for path in method_files(method):
            keys |= _yaml_keys(path)
    return frozenset(keys)


def method_keys(method):
    """Keys declared by one method's keys file (not its models' defaults)."""
    return _yaml_keys(method.keys_file) if method.keys_file else frozenset()


@functools.lru_cache(maxsize=None)
def recbole_keys():
    """Every key RecBole knows: its property files, its argument lists and runtime keys."""
    keys = set(_RECBOLE_RUNTIME_KEYS)
    for path in glob.glob(os.path.join(RECBOLE_DIR, "properties", "**", "*.yaml"), recursive=True):
        keys |= _yaml_keys(path)
    for name in ("general_arguments", "training_arguments", "evaluation_arguments", "dataset_arguments"):
        keys |= set(getattr(argument_list, name))
    return frozenset(keys)



# ----- the one check of their values ---------------------------------------------------------------------------
def normalize(values, model=None):
    """``values`` with every string given to a key declared as a list (and not as a string) read as a list: a comma
    list ``a,b`` or ``[a, b]``, each item read as YAML reads it (``0.5`` a number, ``joint:3`` a string), as
    ``--key=[a,b]`` or a config file would give it. Other values are returned as they are."""
    notes = annotations(model)
    out = dict(values)
    for key, value in values.items():
        note = notes.get(key)
        if note is None or not isinstance(value, str) or "str" in note.types:
            continue
        if any(t == "list" or isinstance(t, tuple) for t in note.types):
            items = [v.strip() for v in value.strip().strip("[]").split(",") if v.strip()]
            out[key] = [yaml.load(v, Loader=LOADER) if v[:1] not in "'\"" else v.strip("'\"") for v in items]
    return out


def check(values, model=None, prefix=""):
    """Type- and range-check every annotated key of ``values`` (a mapping of resolved keys), with ``model``'s own
    annotations first. Raises TransferConfigError naming the first bad key (after ``prefix``, e.g. a domain's), its
    value and what it must be."""
    notes = annotations(model)
    for key, value in values.items():
        note = notes.get(key)
        if note is not None and not note.accepts(value):
            hint = ""
            if note.choices is not None:  # the closest allowed value to the (first) string that is not one
                bad = [v for v in (value if isinstance(value, (list, tuple)) else [value]) if v not in note.choices]
                hint = did_you_mean(bad[0], note.choices) if bad and isinstance(bad[0], str) else ""
            raise TransferConfigError(f"{prefix}{key}={value!r}: must be {note.want()}{hint} ({note.where})")


def check_valid_metric(keys):
    """``valid_metric`` must be a metric the evaluation computes (RecBole finds out after the first epoch)."""
    listed = lambda value: value if isinstance(value, (list, tuple)) else [value] if value is not None else []  # noqa: E731
    metric, metrics = str(keys["valid_metric"]).lower(), [str(m).lower() for m in listed(keys["metrics"])]
    computed = {f"{m}@{k}" for m in metrics for k in listed(keys["topk"])} | set(metrics)
    if metric not in computed:
        raise TransferConfigError(f"valid_metric={keys['valid_metric']!r}: not computed by metrics={keys['metrics']} "
                                  f"topk={keys['topk']}{did_you_mean(metric, sorted(computed))}")


def data_seed_of(keys):
    """The seed of the data (a config's or resolved keys'): ``data_seed``, or the training ``seed`` when it is not set."""
    value = keys["data_seed"]
    return int(keys["seed"] if value is None else value)


def layers(model):
    """The plugin's YAML files of ``model``, in the order they are layered after RecBole's own defaults: the shared
    keys, its method's keys, its own defaults (its method's ``<Model>.yaml``, else a shared model's file)."""
    method = registry.method_of(model)
    shared = property_file("model", f"{model}.yaml")
    own = registry.model_file(model) or (shared if os.path.isfile(shared) else None)
    return [p for p in (property_file("overall.yaml"), method.keys_file, own) if p]


def read_yaml(path, key="config_files"):
    """A YAML config file as a dict (an empty file: {}); one-line errors for a missing file, bad YAML or a file that
    is not a mapping. Parsed once per version of the file (a scenario builds many requests from the same files)."""
    if not os.path.isfile(path):
        raise TransferConfigError(f"{key}: file {path!r} does not exist")
    stat = os.stat(path)
    return copy.deepcopy(_parsed(os.path.abspath(path), path, stat.st_mtime_ns, stat.st_size, key))


@functools.lru_cache(maxsize=256)
def _parsed(absolute, path, _mtime, _size, key):
    with open(absolute, "r", encoding="utf-8") as f:
        text = f.read()
    try:
        data = yaml.load(text, Loader=LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TransferConfigError(f"{key}: {path!r} is not valid YAML ({problem}{where})") from None
    if data is not None and not isinstance(data, dict):
        raise TransferConfigError(f"{key}: {path!r} holds a YAML {type(data).__name__}; a config file holds key: value pairs")
    return dict(data or {})


def layered(below, above):
    """``below`` with the keys of ``above`` given over it: a key that holds a mapping in both changes only the entries
    it names (``eval_args: {mode: full}`` keeps the split below it; one level, so ``split`` itself is replaced whole);
    any other value replaces. Keys given as values (the command line, an arm, a trial) layer this way; config files,
    as RecBole reads them, replace a key whole."""
    out = dict(below)
    for key, value in above.items():
        under = out.get(key)
        out[key] = {**under, **value} if isinstance(value, dict) and isinstance(under, dict) else value
    return out


def recbole_model_defaults(model):
    """The keys of RecBole's own file for ``model`` (``recbole/properties/model/<model>.yaml``); {} when it has none."""
    path = os.path.join(RECBOLE_PROPERTIES, "model", f"{model}.yaml")
    return read_yaml(path) if os.path.isfile(path) else {}


def resolve(model, config_files=(), config_dict=None):
    """The keys of a run before a domain is chosen: RecBole's overall and model defaults, the plugin's layers of
    ``model``, the config files, then ``config_dict`` (the last two :func:`normalize`-d): as a TransferConfig layers
    them (``config_dict`` by :func:`layered`), less a dataset's own defaults."""
    keys = {}
    keys.update(read_yaml(os.path.join(RECBOLE_PROPERTIES, "overall.yaml")))
    keys.update(recbole_model_defaults(model))
    for path in layers(model):
        keys.update(read_yaml(path))
    for path in config_files or ():
        keys.update(normalize(read_yaml(path), model))
    return layered(keys, normalize(config_dict or {}, model))
