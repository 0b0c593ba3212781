"""A scenario's runs as Ray tasks: ``--scenario --workers K`` (a local Ray of K CPUs) or ``--ray_address`` (a cluster;
with ``--workers K``, at most K units at once there).

A scenario is every seed x target x arm; a runner whose arms are independent of each other splits it into units of
one seed and one arm (``Runner.parallel_units``), each unit its runner's own ``scenario`` call with that arm and that
seed, and further into one unit per part where the runner names parts (``Runner.scenario_parts``: the overlap
family's settings), so that no long unit is left running alone at the end. Every unit is one Ray task of one CPU and one torch thread. The units' rows are then put in the order the
sequential run gives them (seed, then target, then arm, then the unit's own order), so ``--workers`` changes the
wall time and nothing else: the same rows, tested against the sequential run.

- A runner that trains something once per seed before its arms (the two-stage runner's source) declares it in
  ``Runner.seed_keys``: it runs first, one task per seed, and its keys (the source checkpoint) go to every unit of
  that seed. A unit that loads the source checkpoint trains its arm on the same source weights as the sequential run.
- Paths a task reads or writes (``data_path``, ``protocol_dir``, ``checkpoint_dir``, ``domain_cache_dir``,
  ``source_checkpoint``, and any other key whose value is a relative path that exists here) are made absolute first. On a cluster they must be on storage every node sees: the protocol one task draws and caches is
  read by the others.
- A unit's error is the error of the command (a ``TransferError`` stays one, without a traceback).
- What the units of one seed build alike (the overlap family's pair of each setting) a runner may take from
  :func:`shared`: each worker builds it once and keeps it for its next unit of the same run and seed, as the
  sequential run builds it once for all arms; kept only up to :data:`SHARED_ROWS` interactions per worker.
"""

import json
import os
import time

from ..errors import TransferConfigError
from ..request import Request

PATH_KEYS = ("data_path", "protocol_dir", "checkpoint_dir", "domain_cache_dir", "source_checkpoint")
SHARED_ROWS = 2_000_000  # interactions a worker keeps of what its units share (a larger pair is rebuilt per unit)
_shared = {"scope": None, "items": {}, "rows": 0}  # this worker's: the unit's request (seed included) -> what it built
# what differs between two runs of the same rows: wall times and checkpoint paths
TIMING = ("seconds", "train_seconds", "valid_seconds", "seconds_per_epoch", "model_file")


def comparable(row):
    """``row`` without what two runs of it may differ in (wall times, checkpoint paths; a validation curve keeps its
    epochs and scores, a stage report the same): ``--workers`` promises equal ``comparable`` rows."""
    out = {k: v for k, v in row.items() if k not in TIMING}
    if out.get("stages"):
        out["stages"] = [comparable(stage) for stage in out["stages"]]
    if out.get("valid_curve"):
        out["valid_curve"] = [(point[0], point[-1]) for point in out["valid_curve"]]
    return out


def _plain(request, **extra):
    """What a task needs to rebuild ``request`` (a Request holds read-only mappings; Ray pickles plain data)."""
    keys = dict(request.config_dict)
    for key in PATH_KEYS:
        if request.keys.get(key):
            keys[key] = os.path.abspath(str(request.keys[key]))
    for key, value in keys.items():  # a method's own file keys (a link file, ...): any value that is a relative path here
        if isinstance(value, str) and not os.path.isabs(value) and ("." in value or os.sep in value) and os.path.exists(value):
            keys[key] = os.path.abspath(value)
    keys.update(extra)
    return {"model": request.model, "source": request.source, "targets": list(request.targets),
            "config_files": list(request.config_files), "config_dict": keys}


def _rebuild(plain):
    return Request(plain["model"], plain["source"], plain["targets"], plain["config_files"], plain["config_dict"])


def _seed_task(plain):
    from ..logs import quiet_logging

    quiet_logging()
    request = _rebuild(plain)
    return request.method.runner.seed_keys(request.method, request)


def shared(key, build, rows):
    """``build()``, or, inside a unit task, what a unit of the same run and seed already built under ``key`` in this
    worker (``rows(value)``: its interactions, counted against :data:`SHARED_ROWS`). Outside a unit: ``build()``."""
    if _shared["scope"] is None:
        return build()
    if key in _shared["items"]:
        return _shared["items"][key]
    value = build()
    size = rows(value)
    if _shared["rows"] + size <= SHARED_ROWS:
        _shared["items"][key] = value
        _shared["rows"] += size
    return value


def _unit_task(plain, arm, seed, chosen, part=None):
    from ..logs import quiet_logging

    quiet_logging()
    scope = json.dumps(plain, sort_keys=True, default=str)  # the same for every unit of one run and seed
    if _shared["scope"] != scope:
        _shared.update(scope=scope, items={}, rows=0)
    request = _rebuild(plain)
    start, said = time.time(), []
    # the unit's progress lines are its runs' ("[k/n] ...") and its seed's ("seed S: ..."): the driver prints one line
    # per unit instead; any other line (a run the runner leaves out, and why) goes back to the driver
    keep = lambda line: said.append(line) if not line.startswith(("[", "seed ")) else None  # noqa: E731
    extra = {} if part is None else {"part": part}
    rows = request.method.runner.scenario(request.method, request, [arm], [seed], progress=keep, chosen=chosen, **extra)
    return rows, time.time() - start, said


def _merged_order(sequences):
    """One order of the targets (each numbered by its occurrence, so a label given twice stays twice) in which every
    unit's sequence keeps its order: each unit lists the targets it ran in the sequential run's order, and may leave
    some out. A target unseen so far goes right before the next one of its unit already placed."""
    order = []
    for sequence in sequences:
        for at, target in enumerate(sequence):
            if target in order:
                continue
            following = next((t for t in sequence[at + 1:] if t in order), None)
            order.insert(order.index(following) if following is not None else len(order), target)
    return order


def _numbered(rows):
    """(target, how many rows of that target came before in the unit) per row."""
    seen = {}
    out = []
    for row in rows:
        seen[row["target"]] = seen.get(row["target"], -1) + 1
        out.append((row["target"], seen[row["target"]]))
    return out


def run_parallel(method, request, arms=None, seeds=None, workers=None, ray_address=None, progress=None):
    """Every (seed, arm) unit of ``request``'s scenario as a Ray task; the rows in the sequential run's order."""
    import ray

    from ..tune.cluster import check_workers, import_roots, probe_address, ray_get, ray_session, run_tasks

    runner = method.runner
    if not runner.parallel_units:
        raise TransferConfigError(f"--workers / --ray_address: the {method.name} scenario runs its arms inside one run "
                                  "(they are not independent units); run it without them")
    check_workers(workers)
    chosen = bool(arms)
    arms = runner.scenario_arms(method, request, arms)
    seeds = list(seeds or [request.seed])
    probe_address(ray_address)
    say = progress or (lambda line: None)
    start = time.time()
    with ray_session(ray_address, None if ray_address else workers, import_roots(method)):
        cpus = ray.cluster_resources().get("CPU", 0)
        parts = runner.scenario_parts(method, request)
        units = [(seed, arm, part) for seed in seeds for arm in arms for part in parts]
        say(f"Ray {ray.get_runtime_context().gcs_address}: {len(units)} units (seed x arm"
            f"{'' if parts == [None] else ' x ' + runner.part_name}) on {cpus:g} CPUs"
            + (f", at most {workers} at once" if ray_address and workers else ""))
        seed_task, unit_task = ray.remote(num_cpus=1)(_seed_task), ray.remote(num_cpus=1)(_unit_task)
        per_seed = {seed: {} for seed in seeds}
        if runner.prepares_per_seed:
            pending = {seed_task.remote(_plain(request, seed=seed)): seed for seed in seeds}
            for seed, keys in zip(pending.values(), ray_get(list(pending))):
                per_seed[seed] = keys
                say(f"seed {seed}: prepared once for its units ({', '.join(f'{k} {v}' for k, v in keys.items())})")
        results = {}

        def finished(index, result):
            results[index] = result
            seed, arm, part = units[index]
            for line in result[2]:
                say(f"seed {seed}: {line}")
            say(f"[{len(results)}/{len(units)}] seed {seed}, {arm}{'' if part is None else f', {part}'}: "
                f"{len(result[0])} runs in {result[1]:.0f}s "
                f"({time.time() - start:.0f}s so far)")

        run_tasks(unit_task, [(_plain(request, seed=seed, **per_seed[seed]), arm, seed, chosen, part)
                              for seed, arm, part in units], workers, finished)
    rows = []
    for seed in seeds:
        indices = [i for i, unit in enumerate(units) if unit[0] == seed]
        order = _merged_order([_numbered(results[i][0]) for i in indices])
        keyed = [(order.index(target), position, n, row) for position, i in enumerate(indices)
                 for n, (target, row) in enumerate(zip(_numbered(results[i][0]), results[i][0]))]
        rows += [row for *_key, row in sorted(keyed, key=lambda k: k[:3])]
    return rows
