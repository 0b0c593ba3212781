"""Amazon review files (the 2014 and 2018 releases) to RecBole atomic files with review text.

A file holds one review per line (optionally gzip-compressed, ``.gz``): a JSON object (2018, and the 2014 "strict"
files), or a Python dict literal (the original 2014 files), parsed with :func:`ast.literal_eval` (never ``eval``).
Of each review we keep ``reviewerID`` (user), ``asin`` (item), ``overall`` (rating), ``reviewText`` and, when
present, ``unixReviewTime``; a review with one of the first four empty or missing is dropped and counted.

:func:`write_amazon_pair` writes two domains, ``<folder>/<name>/<name>.inter`` with the fields
``user_id:token item_id:token rating:float timestamp:float review:token_seq`` (the text lowercased, split into
words of letters, digits and apostrophes), after the paper's filters: items with at least ``min_item_reviews``
(30) and users with at least ``min_user_reviews`` (10) reviews in the domain, applied until both hold (a k-core).
Users of the two domains are aligned by ``reviewerID``.
"""

import ast
import gzip
import json
import logging
import os
import re

import pandas as pd

from ..errors import TransferDataError
from .synthetic import write_atomic_rows

logger = logging.getLogger(__name__)

FIELDS = ("reviewerID", "asin", "overall", "reviewText")
WORD = re.compile(r"[a-z0-9']+")


def _open(path):
    if not os.path.isfile(path):
        raise TransferDataError(f"review file {path!r}: not found")
    return gzip.open(path, "rt", encoding="utf-8") if path.endswith(".gz") else open(path, "r", encoding="utf-8")


def _parse(line, path, number):
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        try:
            record = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            raise TransferDataError(
                f"review file {path!r}, line {number}: neither JSON nor a Python dict literal; expected the Amazon "
                "2014 or 2018 review format (one review object per line)"
            ) from None
    if not isinstance(record, dict):
        raise TransferDataError(f"review file {path!r}, line {number}: a {type(record).__name__}, not a review object")
    return record


def read_reviews(path):
    """A DataFrame (user, item, rating, timestamp, text) of a review file, and the number of dropped reviews."""
    rows, dropped, seen_fields = [], 0, False
    with _open(path) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            record = _parse(line, path, number)
            seen_fields |= any(k in record for k in FIELDS)
            values = [record.get(k) for k in FIELDS]
            if any(v is None or (isinstance(v, str) and not v.strip()) for v in values):
                dropped += 1
                continue
            user, item, rating, text = values
            rows.append((str(user), str(item), float(rating), float(record.get("unixReviewTime", number)),
                         " ".join(WORD.findall(str(text).lower()))))
    if not seen_fields:
        raise TransferDataError(f"review file {path!r}: no review has any of the fields {', '.join(FIELDS)}; expected the "
                                "Amazon 2014 or 2018 review format")
    frame = pd.DataFrame(rows, columns=["user", "item", "rating", "timestamp", "text"])
    frame = frame[frame["text"].str.len() > 0]
    return frame, dropped + (len(rows) - len(frame))


def k_core(frame, min_item, min_user):
    """Keep items with >= ``min_item`` and users with >= ``min_user`` reviews, repeated until both hold."""
    while True:
        items = frame["item"].map(frame["item"].value_counts())
        users = frame["user"].map(frame["user"].value_counts())
        keep = (items >= min_item) & (users >= min_user)
        if keep.all():
            return frame
        frame = frame[keep]


def write_amazon_pair(source_file, target_file, folder, names=("amazon_source", "amazon_target"), min_item_reviews=30,
                      min_user_reviews=10):
    """Write both domains (see the module docstring); returns {name: (users, items, reviews, dropped)}."""
    out = {}
    for path, name in zip((source_file, target_file), names):
        frame, dropped = read_reviews(path)
        frame = k_core(frame, min_item_reviews, min_user_reviews)
        if frame.empty:
            raise TransferDataError(f"review file {path!r}: no review is left after the filters (items >= "
                                    f"{min_item_reviews} and users >= {min_user_reviews} reviews)")
        frame = frame.sort_values(["user", "timestamp", "item"], kind="stable")
        write_atomic_rows(folder, name, "inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\treview:token_seq",
                     [f"{row.user}\t{row.item}\t{row.rating:g}\t{row.timestamp:.0f}\t{row.text}"
                      for row in frame.itertuples(index=False)])
        out[name] = (frame["user"].nunique(), frame["item"].nunique(), len(frame), dropped)
        logger.info("%s: %d users, %d items, %d reviews (%d dropped: an empty field)", name, *out[name])
    return out
