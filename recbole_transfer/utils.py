"""Small helpers shared by the pipeline: threads, paths to bundled files, stable hashing."""

import contextlib
import hashlib
import json
import os
import random

import numpy as np
import recbole
import torch

PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "properties")
if not os.path.isdir(PROPERTIES_DIR):  # running from a source checkout without install
    PROPERTIES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "properties")

RECBOLE_DIR = os.path.dirname(os.path.abspath(recbole.__file__))
BUNDLED_DATA_DIR = os.path.join(RECBOLE_DIR, "dataset_example")


def property_file(*parts):
    """Absolute path of a YAML file shipped in ``properties/``."""
    return os.path.join(PROPERTIES_DIR, *parts)


def set_threads(num_threads):
    """Pin torch's intra-op threads. On 2-core machines 1 thread is the fast choice when anything
    else runs beside (measured ~90x faster than the default for a small MLP step)."""
    torch.set_num_threads(int(num_threads))  # validated with the config (TYPED_KEYS)


def stable_hash(obj, length=12):
    """Hash of a JSON-serialisable object that does not change between processes."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def listish(value):
    """A list from a YAML list, a Python list, or a command-line string such as ``[a,b]`` or ``a,b``."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        return list(value)
    value = str(value).strip().strip("[]")
    return [v.strip().strip("'\"") for v in value.split(",") if v.strip()]


@contextlib.contextmanager
def fixed_rng(seed):
    """Seed python, numpy and torch (CPU and every CUDA device) for a block, then restore their previous
    states: the caller's random streams (training negatives, dropout) are neither consumed nor reseeded."""
    states = random.getstate(), np.random.get_state()
    random.seed(seed)
    np.random.seed(seed)
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
