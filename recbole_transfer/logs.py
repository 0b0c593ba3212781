"""Logging set-up for entry points only: the CLI, the benchmark scripts and a Ray Tune trial (the entry point of a
Ray worker). Library modules log with ``logging.getLogger(__name__)`` and never configure logging themselves."""

import contextlib
import logging
import os
import sys
import threading
import time
import warnings

from recbole.utils import init_logger


EVERY_S = 10.0  # the longest a long phase stays silent (progress, heartbeat)


def progress(iterable, total, what, logger, every=None):
    """``iterable`` as it is, logging ``what: done / total (seconds)`` each time ``every`` seconds (default
    :data:`EVERY_S`) have passed since the last line: a long set-up phase (candidates drawn user by user, a
    fingerprint over every batch) is never silent."""
    every = EVERY_S if every is None else every
    start = last = time.time()
    for done, item in enumerate(iterable, 1):
        yield item
        now = time.time()
        if now - last >= every and done < total:
            last = now
            logger.info("%s: %d / %d (%.0f s)", what, done, total, now - start)


_watch = {"on": False, "last": 0.0, "phases": []}  # the command's watchdog (:func:`watch`), one per process


class _Stamping:
    """A text stream that notes when it was last written to (the watchdog's last line); the rest is the stream's."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text):
        _watch["last"] = time.time()
        return self._stream.write(text)

    def __getattr__(self, name):
        return getattr(self._stream, name)


@contextlib.contextmanager
def _every(period, step, name):
    """``step()`` every ``period`` seconds, from a daemon thread, while the block runs."""
    done = threading.Event()

    def loop():
        while not done.wait(period):
            step()

    thread = threading.Thread(target=loop, name=name, daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


@contextlib.contextmanager
def watch(logger, every=None):
    """A whole command: whenever nothing has been written to stdout or stderr for ``every`` seconds (default
    :data:`EVERY_S`), log ``<phase>: still running (seconds)`` for the innermost :func:`heartbeat` phase running, or
    ``still running (seconds since the last line)`` between phases, from one thread. So no gap between two phases,
    nor code outside any phase, stays silent for longer; inside it, :func:`heartbeat` only names its phase."""
    if _watch["on"]:
        yield
        return
    every = EVERY_S if every is None else every

    def check():
        now = time.time()
        if now - _watch["last"] < every:
            return
        phases = list(_watch["phases"])
        if phases:
            logger.info("%s: still running (%.0f s)", phases[-1][0], now - phases[-1][1])
        else:
            logger.info("still running (%.0f s since the last line)", now - _watch["last"])
        _watch["last"] = now  # also when the line went nowhere (a quieter log level)

    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Stamping(sys.stdout), _Stamping(sys.stderr)
    _watch.update(on=True, last=time.time(), phases=[])
    try:
        with _every(min(1.0, every / 4), check, "watchdog"):
            yield
    finally:
        sys.stdout, sys.stderr = saved
        _watch.update(on=False, phases=[])


@contextlib.contextmanager
def heartbeat(what, logger, every=None):
    """While the block runs, log ``what: still running (seconds)`` every ``every`` seconds (default :data:`EVERY_S`),
    from a thread: a phase inside code that prints nothing as it goes (RecBole's loading and filtering, an epoch or
    an evaluation over millions of rows, a model built in one call) is never silent for longer. Inside
    :func:`watch` (a CLI command), the watchdog speaks for the phase instead."""
    start = time.time()
    if _watch["on"]:
        _watch["phases"].append((what, start))
        try:
            yield
        finally:
            _watch["phases"].pop()
        return
    with _every(EVERY_S if every is None else every,
                lambda: logger.info("%s: still running (%.0f s)", what, time.time() - start), "heartbeat"):
        yield


def quiet_recbole_warnings():
    """RecBole 1.2.1 on pandas 2.2 / torch 2.13 emits deprecation noise on every dataset and trainer; Ray 2.6.3
    warns about pkg_resources when recbole imports it."""
    warnings.filterwarnings("ignore", category=FutureWarning, module="recbole")
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated")


def quiet_logging():
    """Warnings and errors only, one line each (tables and progress lines are printed, not logged). A failed Ray
    Tune trial is one progress line and its error.txt, not a traceback in the driver's output."""
    quiet_recbole_warnings()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("ray.tune").setLevel(logging.CRITICAL)


def trial_logging(path="recbole.log"):
    """A Ray Tune trial: RecBole's per-epoch logs go to the trial's own ``recbole.log`` only."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    root = logging.getLogger()
    for handler in root.handlers:  # a reused Ray worker: the previous trial's log file is closed
        handler.close()
    root.handlers = [logging.FileHandler(os.path.abspath(path))]
    root.handlers[0].setFormatter(logging.Formatter("%(asctime)s %(levelname)s  %(message)s"))
    root.setLevel(logging.INFO)


class _LogKeys(dict):
    """The keys RecBole's ``init_logger`` reads (model, dataset, state, and all of them for the log file's hash)."""

    @property
    def final_config_dict(self):
        return self


def recbole_logging(keys, dataset):
    """A single run on ``dataset`` with the resolved ``keys`` of its request: RecBole's own logging (a log file under
    log/ and the console, with its colours), as RecBole's ``run_recbole`` sets it up."""
    quiet_recbole_warnings()
    init_logger(_LogKeys({**keys, "dataset": dataset}))
