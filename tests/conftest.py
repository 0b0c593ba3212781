"""Shared fixtures. One torch thread everywhere: on 2-core machines the default is many times slower.

Markers (pytest.ini): ``ray`` starts Ray (a search), ``slow`` takes more than ~2-3 s on a 2-core machine. The edit
loop: ``pytest -q -m "not slow and not ray"``.
"""

import contextlib
import io
import logging
import os
import signal
import warnings

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from recbole_transfer import cli  # noqa: E402
from recbole_transfer.data.synthetic import write_planted_domain  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore", category=FutureWarning)
logging.getLogger().setLevel(logging.WARNING)

PROTOCOL = {
    "eval_args": {"split": {"LS": "valid_and_test"}, "group_by": "user", "order": "RO", "mode": "uni99"},
    "metrics": ["Hit", "NDCG"],
    "topk": [10],
    "valid_metric": "Hit@10",
}


def call_cli(args, cwd=None):
    """The command line in this process: ``recbole_transfer.cli.main(args)`` (in ``cwd`` when given) with stdout and
    stderr captured; returns (exit code, stdout, stderr). The one helper every CLI test uses, through the
    ``run_cli`` fixture (a module-scoped fixture calls it directly). One subprocess test (test_cli.py) covers the
    real entry point ``run_recbole_transfer.py``."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(cwd) if cwd is not None else contextlib.nullcontext():
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = cli.main([str(a) for a in args])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def run_cli():
    """``run_cli(args, cwd=None) -> (exit code, stdout, stderr)``: see :func:`call_cli`."""
    return call_cli


@pytest.fixture(autouse=True)
def _keep_signal_handlers():
    """Ray Tune (a search run in this process) installs its own SIGINT handler and leaves it: restore ours, so that
    Ctrl-C stops the test session at the first press."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGUSR1)}
    yield
    for sig, handler in handlers.items():
        if handler is not None:
            signal.signal(sig, handler)


class _SharedRay:
    """One local Ray (2 CPUs, the search driver's own environment: ``cluster.ray_session``) for the tests that start
    Ray, started at the first and shut down at the end of the session: a search finds it running and uses it, so
    the tests do not each pay Ray's start and shutdown (about 4 s). A test that needs a Ray of its own (joining a
    cluster by address, workers that import a method outside the package) takes ``own_ray``, which stops it."""

    ENV = ("PYTHONWARNINGS", "RAY_AIR_NEW_OUTPUT", "RAY_worker_niceness")  # what ray_session sets in the driver

    def __init__(self):
        self.session, self.env = None, {}

    def up(self):
        import ray

        if not ray.is_initialized():
            from recbole_transfer.tune.cluster import ray_session

            self.down()
            before = {k: os.environ.get(k) for k in self.ENV}
            self.session = ray_session(num_cpus=2)
            self.session.__enter__()
            self.env = {k: os.environ.get(k) for k in self.ENV}
            for key, value in before.items():  # set again for each ray test only (_ray_for_ray_tests)
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value

    def down(self):
        if self.session is not None:
            session, self.session = self.session, None
            session.__exit__(None, None, None)


@pytest.fixture(scope="session")
def shared_ray():
    ray = _SharedRay()
    yield ray
    ray.down()


@pytest.fixture(autouse=True)
def _ray_for_ray_tests(request):
    """Tests marked ``ray`` run on the shared Ray (unless they take ``own_ray``), with the driver environment
    ray_session gives a search; the other tests see the environment as it was."""
    if request.node.get_closest_marker("ray") is None or "own_ray" in request.fixturenames:
        yield
        return
    shared = request.getfixturevalue("shared_ray")
    shared.up()
    with pytest.MonkeyPatch.context() as patch:
        for key, value in shared.env.items():
            if value is not None:
                patch.setenv(key, value)
        yield


@pytest.fixture
def own_ray(shared_ray):
    """No shared Ray while this test runs: its search starts (or joins) a Ray of its own."""
    shared_ray.down()
    yield


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    """Run in a temporary directory: RecBole writes log/ and saved/ into the working directory."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def small_domains(workdir):
    """A small planted source and target (disjoint ids) under ``workdir/data``; returns a config dict."""
    data = workdir / "data"
    write_planted_domain(str(data), "src", n_users=120, n_items=130, per_user=12, n_clusters=4, seed=1)
    write_planted_domain(str(data), "tgt", n_users=80, n_items=120, per_user=6, n_clusters=4, seed=2)
    write_planted_domain(str(data), "tiny", n_users=30, n_items=40, per_user=5, n_clusters=2, seed=3)
    return {
        "data_path": str(data),
        "epochs": 3,
        "train_batch_size": 512,
        "show_progress": False,
        "seed": 7,
        "user_inter_num_interval": "[3,inf)",
    }
