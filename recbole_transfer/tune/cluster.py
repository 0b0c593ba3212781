"""The Ray cluster of a search: a local Ray on this machine's cores, or an existing cluster joined by address, with
the environment every trial worker needs (one torch thread, quiet warnings, import roots of an outside method)."""

import contextlib
import logging
import os
import socket
import sys

from ..errors import TransferConfigError, TransferError

QUIET_WARNINGS = "ignore::FutureWarning,ignore:pkg_resources is deprecated"


@contextlib.contextmanager
def ray_session(address=None, num_cpus=None, paths=()):
    """Join ``address`` or start a local Ray on ``num_cpus`` cores (default: all); shut down what we started.
    ``paths``: more import roots for the workers (where a method registered outside the package lives)."""
    import ray

    check_cpus(address, num_cpus)
    if ray.is_initialized():
        yield
        return
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {"OMP_NUM_THREADS": "1", "PYTHONWARNINGS": QUIET_WARNINGS,
           "PYTHONPATH": os.pathsep.join(p for p in (package_root, *paths, os.environ.get("PYTHONPATH")) if p)}
    # Ray's processes started here inherit these (its pkg_resources warning, the boxed reporter of
    # Ray 2.6's new output engine that ignores verbose=0); restored on exit. A local Ray's workers run at the
    # driver's priority: Ray's default (nice 15) lets any other work on the machine starve them (measured: a
    # task 20x slower beside two busy processes on 2 cores, where the same run without Ray was not).
    names = ("PYTHONWARNINGS", "RAY_AIR_NEW_OUTPUT", "RAY_worker_niceness")
    saved = {k: os.environ.get(k) for k in names}
    os.environ.update({"PYTHONWARNINGS": QUIET_WARNINGS, "RAY_AIR_NEW_OUTPUT": "0"})
    if not address:
        os.environ.setdefault("RAY_worker_niceness", "0")  # unless the user chose one
    try:
        try:
            # "local": always a new Ray, never one found on the machine (another search, a `ray start`)
            ray.init(
                address=address or "local", num_cpus=None if address else (num_cpus or os.cpu_count()), include_dashboard=False,
                logging_level=logging.WARNING, runtime_env={"env_vars": env},
            )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            if address:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise TransferConfigError(f"ray_address={address!r}: cannot join a Ray cluster there ({first})") from None
            raise
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def import_roots(method):
    """The sys.path entry a worker needs to import the module that registered ``method`` (empty when it is one of
    this package's methods or an installed package that any worker imports anyway)."""
    module = sys.modules.get(method.module or "")
    path = getattr(module, "__file__", None)
    if not path:
        return ()
    root = os.path.dirname(os.path.abspath(path))
    for _ in range(method.module.count(".") + (1 if os.path.basename(path) == "__init__.py" else 0)):
        root = os.path.dirname(root)
    return (root,)


def check_cpus(address, num_cpus):
    if address and num_cpus:
        raise TransferConfigError(f"ray_address={address!r} with {num_cpus} CPUs: the CPUs are a local Ray's "
                                  "(--num_cpus starts one); a cluster joined by address has its own")


def probe_address(address, num_cpus=None):
    """Fail in seconds, before any training, when nothing listens at a ``host:port`` Ray address
    (Ray itself retries for minutes); a CPU count for a local Ray given with it is an error."""
    if address is None:
        return
    check_cpus(address, num_cpus)
    if not str(address).strip():
        raise TransferConfigError("ray_address='': expected host:port, e.g. 127.0.0.1:6379 (leave it out for a local Ray)")
    if str(address).startswith("ray://"):
        raise TransferConfigError(f"ray_address={address!r}: Ray Client addresses are not supported; give the "
                                  "cluster's GCS address (host:port) from a node of the cluster")
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit():
        raise TransferConfigError(f"ray_address={address!r}: expected host:port, e.g. 127.0.0.1:6379")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise TransferConfigError(f"ray_address={address!r}: no Ray cluster answers there ({exc.strerror or exc})") from None


def check_cluster(space, emit):
    import ray

    cpus = ray.cluster_resources().get("CPU", 0)
    emit(f"Ray cluster {ray.get_runtime_context().gcs_address}: {cpus:g} CPUs, "
         f"{int(cpus // space.cpus_per_trial)} trials at a time")
    if cpus < space.cpus_per_trial:
        raise TransferConfigError(f"search space cpus_per_trial={space.cpus_per_trial}: the Ray cluster has {cpus:g} CPUs")


def ray_get(refs):
    """``ray.get``, with a task's own error raised as it is (a TransferError: one line, no traceback)."""
    import ray

    try:
        return ray.get(refs)
    except ray.exceptions.RayTaskError as exc:
        cause = getattr(exc, "cause", None)
        if isinstance(cause, TransferError):
            raise cause from None
        raise


def check_workers(workers):
    if workers is not None and workers < 1:
        raise TransferConfigError(f"--workers={workers}: must be >= 1")


def run_tasks(task, calls, limit, on_done):
    """``task.remote(*args)`` for each ``args`` of ``calls``, at most ``limit`` in flight at once (None: all), each
    task's result given to ``on_done(index, result)`` as it finishes. A task's error cancels the others and is
    raised as :func:`ray_get` raises it."""
    import ray

    pending, submitted = {}, 0
    try:
        while submitted < len(calls) or pending:
            while submitted < len(calls) and (limit is None or len(pending) < limit):
                pending[task.remote(*calls[submitted])] = submitted
                submitted += 1
            done, _ = ray.wait(list(pending), num_returns=1)
            index = pending.pop(done[0])
            on_done(index, ray_get(done)[0])
    except BaseException:
        for ref in pending:
            ray.cancel(ref, force=True)
        raise
