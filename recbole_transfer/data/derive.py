"""Writing a derived domain (:mod:`.domains` declares and validates it): the base's atomic files read, its rules,
time window and user split applied, a label or context fields or ``kg_text`` documents added, the output returned as
frames (``materialize`` writes them). Deterministic: stable hashes, sorted output."""

import os
import zlib

import numpy as np
import pandas as pd

from ..errors import TransferConfigError, TransferDataError, did_you_mean
from ..utils import BUNDLED_DATA_DIR

CONTEXT_FIELDS = {"hour": ("inter", "timestamp"), "weekday": ("inter", "timestamp"),
                  "age_bucket": ("user", "age"), "decade": ("item", "release_year")}
AGE_BINS = [18, 25, 35, 45, 50, 56]  # ml-100k's / MovieLens-1M's age groups
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def dataset_dir(name, data_path):
    """Folder of an atomic dataset: the bundled ml-100k or ``data_path/name``."""
    if name == "ml-100k":
        return os.path.join(BUNDLED_DATA_DIR, name)
    return os.path.join(os.path.abspath(data_path), name)


def check_dataset_exists(name, data_path, key="dataset"):
    folder = dataset_dir(name, data_path)
    inter = os.path.join(folder, f"{name}.inter")
    if not os.path.isfile(inter):
        raise TransferDataError(
            f"{key}={name!r}: no atomic file {inter!r}. Give an atomic dataset under data_path "
            f"(data_path={data_path!r}), the bundled 'ml-100k', or a derived domain declared under 'domains'."
        )
    return folder

def _fields(frame):
    """{field name: column name} of an atomic frame (``age:token`` -> ``age``)."""
    return {c.split(":")[0]: c for c in frame.columns}


def read_atomic(path):
    frame = pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False, quoting=3, encoding="utf-8")
    return frame, _fields(frame)


def write_atomic(frame, path):
    frame.to_csv(path, sep="\t", index=False, quoting=3, encoding="utf-8")


def _rule_mask(frame, fields, rule, domain, key):
    field = rule["field"]
    if field not in fields:
        raise TransferConfigError(
            f"domains.{domain}.{key}.field={field!r}: no such field{did_you_mean(field, fields)}; "
            f"fields: {', '.join(fields)}"
        )
    values = {str(v) for v in rule["values"]}
    match = rule.get("match", "exact")
    column = frame[fields[field]].astype(str)
    tokens = column.str.split(" ")
    if match == "first":
        mask = tokens.str[0].isin(values)
    elif match == "prefix":
        mask = column.apply(lambda s: any(s.startswith(v) for v in values))
    elif match == "any" or fields[field].endswith("token_seq"):
        mask = tokens.apply(lambda ts: any(t in values for t in ts))
    else:
        mask = column.isin(values)
    return ~mask if rule.get("exclude", False) else mask


def _to_seconds(value):
    if isinstance(value, (int, float)):
        return float(value)
    return pd.Timestamp(str(value), tz="UTC").timestamp()


def derive(name, spec, data_path):
    folder = check_dataset_exists(spec["base"], data_path, key=f"domains.{name}.base")
    base = spec["base"]
    inter, ifields = read_atomic(os.path.join(folder, f"{base}.inter"))
    uid, iid = "user_id", "item_id"
    if uid not in ifields or iid not in ifields:
        raise TransferDataError(f"domains.{name}.base={base!r}: the .inter file needs user_id and item_id fields")
    tables = {}
    for suffix in ("item", "user"):
        path = os.path.join(folder, f"{base}.{suffix}")
        if os.path.isfile(path):
            tables[suffix] = read_atomic(path)
    keep = pd.Series(True, index=inter.index)
    for key, suffix, id_field in (("items", "item", iid), ("users", "user", uid)):
        rule = spec[key]
        if rule is None:
            continue
        if suffix not in tables:
            raise TransferDataError(f"domains.{name}.{key}: dataset {base!r} has no .{suffix} file to filter on")
        table, tfields = tables[suffix]
        ids = set(table.loc[_rule_mask(table, tfields, rule, name, key), tfields[id_field]])
        keep &= inter[ifields[id_field]].isin(ids)
    if spec["time"] is not None:
        if "timestamp" not in ifields:
            raise TransferDataError(f"domains.{name}.time: dataset {base!r} has no timestamp field")
        ts = inter[ifields["timestamp"]].astype(float)
        if "start" in spec["time"]:
            keep &= ts >= _to_seconds(spec["time"]["start"])
        if "end" in spec["time"]:
            keep &= ts < _to_seconds(spec["time"]["end"])
    if spec["user_split"] is not None:
        parts, kept = spec["user_split"]["parts"], set(spec["user_split"]["keep"])
        part = inter[ifields[uid]].map(lambda t: zlib.crc32(t.encode("utf-8")) % parts)
        keep &= part.isin(kept)
    inter = inter[keep]
    if inter.empty:
        raise TransferDataError(f"domain {name!r}: its rules keep no interaction of {base!r} (spec: {spec})")
    if spec["row_order"] == "sorted":
        inter = inter.sort_values([ifields[uid], ifields.get("timestamp", ifields[iid]), ifields[iid]], kind="stable")
    users, items = set(inter[ifields[uid]]), set(inter[ifields[iid]])
    out = {"inter": inter}
    for suffix, id_field, ids in (("item", iid, items), ("user", uid, users)):
        if suffix in tables:
            table, tfields = tables[suffix]
            out[suffix] = table[table[tfields[id_field]].isin(ids)].sort_values(tfields[id_field], kind="stable")
    if spec["context"]:
        _add_context(name, spec["context"], out)
    if spec["kg_text"]:
        out["inter"] = _add_kg_text(name, folder, base, out["inter"])
    if spec["label"] is not None:
        out = {"inter": _label_interactions(name, spec["label"], inter[ifields[uid]].unique(), tables)}
    if spec["prefix_ids"]:
        for suffix, frame in out.items():
            fields = _fields(frame)
            for id_field in (uid, iid):
                if id_field in fields:
                    frame[fields[id_field]] = f"{name}:" + frame[fields[id_field]]
    return out


def _add_kg_text(name, folder, base, inter):
    """The ``review:token_seq`` field of ``kg_text`` (see the module docstring)."""
    paths = [os.path.join(folder, f"{base}.{suffix}") for suffix in ("link", "kg")]
    if not all(os.path.isfile(p) for p in paths):
        raise TransferDataError(f"domains.{name}.kg_text: dataset {base!r} has no .link and .kg files")
    link, lfields = read_atomic(paths[0])
    kg, kfields = read_atomic(paths[1])
    film = kg[kg[kfields["relation_id"]].str.startswith("film.film.")]
    tails = film.groupby(kfields["head_id"])[kfields["tail_id"]].apply(lambda t: " ".join(sorted(t)))
    entity = dict(zip(link[lfields["item_id"]], link[lfields["entity_id"]]))
    ifields = _fields(inter)
    content = inter[ifields["item_id"]].map(lambda item: tails.get(entity.get(item), ""))
    rating = inter[ifields["rating"]].astype(float).map(lambda r: f"r{int(round(r))}") if "rating" in ifields else ""
    return inter.assign(**{"review:token_seq": (content + " " + rating).str.strip()})


def _add_context(name, fields, out):
    """Write the derived context fields into the domain's frames (see the module docstring)."""
    for field in fields:
        suffix, source = CONTEXT_FIELDS[field]
        frame = out.get(suffix)
        columns = _fields(frame) if frame is not None else {}
        if source not in columns:
            raise TransferDataError(f"domains.{name}.context: {field!r} needs the field {source!r} in the base's .{suffix} file")
        raw = frame[columns[source]]
        if field in ("hour", "weekday"):
            when = pd.to_datetime(raw.astype(float), unit="s", utc=True)
            values = when.dt.hour.map("h{:02d}".format) if field == "hour" else when.dt.dayofweek.map(WEEKDAYS.__getitem__)
        elif field == "age_bucket":
            values = bucket_labels(raw.astype(float), AGE_BINS)
        else:
            year = pd.to_numeric(raw, errors="coerce")
            values = ["unknown" if np.isnan(y) else f"{int(y) // 10 * 10}s" for y in year]
        out[suffix] = frame.assign(**{f"{field}:token": list(values)})


def bucket_labels(values, bins):
    """Numeric values to bucket tokens: ``<b0``, ``b0-(b1-1)``, ..., ``bK+`` (integer bins read naturally)."""
    edges = [float(b) for b in bins]
    fmt = lambda v: f"{v:g}"  # noqa: E731
    names = [f"<{fmt(edges[0])}"] + [
        f"{fmt(lo)}-{fmt(hi - 1)}" if float(lo).is_integer() and float(hi).is_integer() else f"{fmt(lo)}-{fmt(hi)}"
        for lo, hi in zip(edges, edges[1:])
    ] + [f"{fmt(edges[-1])}+"]
    return [names[i] for i in np.searchsorted(edges, np.asarray(values, dtype=float), side="right")]


def _label_interactions(name, label, users, tables):
    if "user" not in tables:
        raise TransferDataError(f"domains.{name}.label: the base dataset has no .user file to read labels from")
    table, tfields = tables["user"]
    field = label["field"]
    if field not in tfields or field == "user_id":
        raise TransferConfigError(
            f"domains.{name}.label.field={field!r}: no such user field{did_you_mean(field, tfields)}; "
            f"fields: {', '.join(f for f in tfields if f != 'user_id')}"
        )
    labels = table.set_index(tfields["user_id"])[tfields[field]]
    users = sorted(u for u in users if u in labels.index and str(labels[u]) != "")
    values = labels.loc[users].astype(str).tolist()
    if label.get("bins") is not None:
        try:
            values = bucket_labels([float(v) for v in values], label["bins"])
        except ValueError:
            raise TransferDataError(f"domains.{name}.label.bins: field {field!r} is not numeric") from None
    return pd.DataFrame({"user_id:token": users, "item_id:token": values})
