"""Collection of a meta-dataset: every task of a suite (of any domain) trained on one space-filling
design of configurations, resumable, in-process or on Dask workers; only the driver writes the store.

Each trial is trained by the suite's domain plug-in (:mod:`metahpo_utils.domains`): tasks are rebuilt
from their recipes on the worker, so only small dicts travel.
"""
from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from .choices import GROUP_BY, TRAINERS
from .data.tasks import Suite, build_suite
from .errors import MetahpoError
from .domains import get_domain
from .space import SearchSpace
from .store import FORMAT_VERSION, MetaDatasetStore, StoreError, validate_store_file


class CollectError(MetahpoError, ValueError):
    """A collection that cannot run (e.g. an unreachable Dask scheduler)."""


# ---------------------------------------------------------------- trial evaluation (runs on workers)
@functools.lru_cache(maxsize=4)
def _suite(name: str, n_tasks: int, seed: int, root: str | None, ways: tuple[int, int] | None) -> Suite:
    return build_suite(name, n_tasks=n_tasks, seed=seed, root=root, ways=ways)


def evaluate_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job of a collection: ``kind="trial"`` trains one configuration on one task,
    ``kind="group"`` trains (task, configuration) pairs together (a batched population where the
    domain supports it; results in ``"trials"``), ``kind="metafeatures"`` computes a task's
    meta-features. The suite's domain plug-in does each.

    Tasks are rebuilt from the suite recipe on the worker (cached per process), so only small
    dicts travel. Torch uses ``job["threads"]`` threads (1 by default) so results do not depend on
    how many workers run. Exceptions become ``status="failed"`` with the message.
    """
    from .training import torch_threads

    s = job["suite"]
    out: dict[str, Any] = {"kind": job["kind"], "task": job["task"]}
    with torch_threads(int(job.get("threads", 1))):
        try:
            suite = _suite(s["suite"], s["n_tasks"], s["seed"], s.get("root"), tuple(s["ways"]) if s.get("ways") else None)
            domain = get_domain(suite.domain)
            if job["kind"] == "metafeatures":
                out["metafeatures"] = domain.metafeatures(suite.task(job["task"]), seed=s["seed"])
            elif job["kind"] == "group":
                results = domain.train_group([(suite.task(t), c) for t, c in zip(job["tasks"], job["configs"])],
                                             epochs=job["epochs"], seed=job["seed"], family=job["family"], device=job.get("device"))
                out["trials"] = [dict(_trial_record(i, job["seed"], r), task=t)
                                 for t, i, r in zip(job["tasks"], job["config_ids"], results)]
            else:
                r = domain.train(suite.task(job["task"]), job["config"], epochs=job["epochs"], seed=job["seed"],
                                 family=job["family"], device=job.get("device"))
                out.update(_trial_record(job["config_id"], job["seed"], r))
        except Exception as err:  # recorded, never fatal to the collection
            out.update(_job_failed(job, err))
    return out


def _trial_record(config_id: int, seed: int, r: Any) -> dict[str, Any]:
    return dict(config_id=config_id, seed=seed, status=r.status, objective=r.objective, test_objective=r.test_objective,
                cost_s=r.cost_s, curve=r.curve, val_loss=r.val_loss, train_loss=r.train_loss)


def _failed_record(config_id: int | None, seed: int | None, err: BaseException) -> dict[str, Any]:
    return dict(config_id=config_id, seed=seed, status="failed", objective=None, test_objective=None, cost_s=None,
                curve=[], val_loss=[], train_loss=[], error=f"{type(err).__name__}: {err}")


def _job_failed(job: dict[str, Any], err: BaseException) -> dict[str, Any]:
    """What a job that raised reports: every trial it held, failed (a group fails as a whole)."""
    if job["kind"] == "group":
        return {"trials": [dict(_failed_record(i, job.get("seed"), err), task=t)
                           for t, i in zip(job["tasks"], job["config_ids"])]}
    return _failed_record(job.get("config_id"), job.get("seed"), err)


def recompute_trial(meta: dict[str, Any], task: str, config_id: int, root: str | None = None) -> dict[str, Any]:
    """Train one (task, configuration) of a collection again from scratch, from its settings alone.

    Args:
        meta: the collection settings (``MetaDatasetStore.read_meta()`` or an export's ``meta.json``).
        task: task name.
        config_id: index in the collection's design.

    Returns:
        The result dict of :func:`evaluate_job`, plus the ``config`` that was trained.
    """
    space = SearchSpace.from_json(meta["space"])
    config = space.design(meta["n_configs"], seed=meta["design_seed"], method=meta["design"])[config_id]
    sfp = {k: meta[k] for k in ("suite", "seed", "n_tasks", "base")}
    sfp.update(root=root, ways=meta.get("ways"))
    res = evaluate_job({"kind": "trial", "suite": sfp, "task": task, "config_id": config_id, "config": config,
                        "epochs": meta["epochs"], "seed": meta["trial_seed"], "family": meta["family"],
                        "device": "cpu", "threads": 1})
    return {**res, "config": config}


# ---------------------------------------------------------------- collection
@dataclass
class CollectReport:
    """What a collection did."""

    store: Path
    n_tasks: int
    n_configs: int
    trials_total: int
    trials_run: int
    trials_skipped: int
    wall_s: float
    statuses: dict[str, int]
    first_error: str | None = None  # the first failed trial's error message, if any failed

    @property
    def trials_per_s(self) -> float:
        return self.trials_run / self.wall_s if self.wall_s > 0 else float("nan")


def collection_meta(suite: Suite, space: SearchSpace, n_configs: int, epochs: int, seed: int,
                    design: str, family: str) -> dict[str, Any]:
    """The settings that identify a collection; a store with different ones is refused."""
    return {"format_version": FORMAT_VERSION, "domain": suite.domain, **suite.fingerprint(), "space": space.to_json(),
            "n_configs": n_configs, "epochs": epochs, "design": design, "design_seed": seed,
            "trial_seed": seed, "family": family}


def _grows_design(key: str, old: dict[str, Any], new: dict[str, Any]) -> bool:
    """More configurations of a Sobol or random design extend it: the first n points stay the same."""
    return key == "n_configs" and new.get("design") in ("sobol", "random") and new[key] > old[key]


def open_for_collection(path: str | os.PathLike, meta: dict[str, Any]) -> MetaDatasetStore:
    """Open (or create) a store for a collection, refusing one made with other settings."""
    path = Path(path)
    if path.exists():
        validate_store_file(path)
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            try:
                old = {k: json.loads(v) for k, v in conn.execute("SELECT key, value FROM meta")}
            except sqlite3.DatabaseError:
                old = {}
        diff = [k for k in meta if k in old and old[k] != meta[k] and not _grows_design(k, old, meta)]
        if diff:
            k = diff[0]
            what = "space" if k == "space" else ("suite" if k in ("suite", "seed", "n_tasks", "base") else k)
            raise StoreError(f"store '{path}' was made with a different {what} ({k}: stored {old[k]!r}, "
                             f"asked {meta[k]!r}); use another store")
    store = MetaDatasetStore(path, create=True)
    store.write_meta(meta)
    return store


def collect(suite: str | Suite = "digits", n_tasks: int | None = None, n_configs: int = 64, epochs: int | None = None,
            store: str | os.PathLike = "runs/digits.sqlite", seed: int = 0, workers: int = 1,
            scheduler: str | None = None, design: str = "sobol", family: str | None = None,
            space: SearchSpace | None = None, root: str | None = None, ways: int | tuple[int, int] | None = None,
            download: bool = False, progress: bool = True,
            device: str | None = "auto", threads: int = 1, max_trials: int | None = None,
            trainer: str = "population", max_group: int = 64, group_by: str = "config") -> CollectReport:
    """Evaluate every task of a suite on one space-filling design of configurations.

    Args:
        suite: suite name (or a built :class:`Suite`).
        n_tasks: tasks in the suite (default: the suite's).
        n_configs: configurations in the design (the same for every task, so tasks compare). Raising it
            on an existing store extends a Sobol or random design (its first points stay the same).
        epochs: training epochs per trial (default: the suite's, 10).
        store: SQLite file; re-running resumes it.
        seed: seed of the suite, the design and the trials.
        workers: >1 runs trials on a Dask ``LocalCluster`` of that many worker processes.
        scheduler: address of an existing Dask scheduler (overrides ``workers``).
        design: ``sobol``, ``lhs`` or ``random``.
        family: model family (default: the suite's).
        space: search space (default: the suite's domain's).
        root: root folder of a torchvision base dataset.
        ways: classes per task (int or (min, max)); default 2..all.
        download: let torchvision download a missing base dataset (the driver does it before any trial).
        progress: show a ``tqdm.auto`` progress bar.
        device: training device (``auto``: CUDA when present, else CPU).
        threads: torch threads per trial.
        max_trials: stop after this many new trials (for demos; a re-run continues).
        trainer: ``population`` (default: trials train as batched populations, see
            :mod:`metahpo_utils.population` and ``group_by``) or ``sequential`` (one trial at a time).
            Both give the same results up to float rounding. Domains without a population trainer
            (text) always train one trial at a time.
        max_group: most trials in one population.
        group_by: ``config`` (one configuration across tasks of similar size) or ``task`` (one task's
            configurations); see :func:`_group_jobs`.

    Returns:
        A :class:`CollectReport`.
    """
    from tqdm.auto import tqdm

    t0 = time.perf_counter()
    if trainer not in TRAINERS:
        raise CollectError(f"collect: trainer= must be one of {', '.join(TRAINERS)} (got {trainer!r})")
    if group_by not in GROUP_BY:
        raise CollectError(f"collect: group_by= must be one of {', '.join(GROUP_BY)} (got {group_by!r})")
    client = connect_scheduler(scheduler) if scheduler is not None else None  # fail before touching the store
    suite_obj = suite if isinstance(suite, Suite) else build_suite(suite, n_tasks=n_tasks, seed=seed, root=root, ways=ways, download=download)
    domain = get_domain(suite_obj.domain)
    space = space or domain.default_space(family)
    family = family or suite_obj.definition.model
    epochs = int(epochs or suite_obj.definition.epochs)
    configs = space.design(n_configs, seed=seed, method=design)
    meta = collection_meta(suite_obj, space, n_configs, epochs, seed, design, family)
    st = open_for_collection(store, meta)
    try:
        st.add_configs(configs)
        sfp = {**suite_obj.fingerprint(), "root": suite_obj.root}
        known = set(st.task_names())
        jobs: list[dict[str, Any]] = [
            {"kind": "metafeatures", "suite": sfp, "task": t, "threads": threads}
            for t in suite_obj.task_names if t not in known
        ]
        done = st.finished()
        trial_jobs = [
            {"kind": "trial", "suite": sfp, "task": t, "config_id": i, "config": c, "epochs": epochs,
             "seed": seed, "family": family, "device": device, "threads": threads}
            for t in suite_obj.task_names for i, c in enumerate(configs) if (t, i, seed) not in done
        ]
        if max_trials is not None:
            trial_jobs = trial_jobs[:max_trials]
        if trainer == "population" and domain.supports_population:
            # approximate training-set sizes, to put tasks of similar size together
            sizes = {t: domain.task_size(suite_obj.specs[t]) for t in suite_obj.task_names}
            jobs += _group_jobs(trial_jobs, family, max_group, sizes, by=group_by)
        else:
            jobs += trial_jobs
        total = len(suite_obj) * n_configs
        n_done = sum((t, i, seed) in done for t in suite_obj.task_names for i in range(n_configs))
        bar = tqdm(total=total, initial=n_done, desc=f"collect {suite_obj.name}", unit="trial", disable=not progress)
        statuses: dict[str, int] = {}
        errors: list[str] = []

        def record(res: dict[str, Any]) -> None:
            if res["kind"] == "metafeatures":
                if "metafeatures" not in res:
                    raise StoreError(f"meta-features of task '{res['task']}' failed: {res.get('error')}")
                st.add_task(res["task"], suite_obj.split_of(res["task"]), suite_obj.specs[res["task"]].to_dict(), res["metafeatures"])
                return
            for trial in res["trials"] if res["kind"] == "group" else [res]:
                st.add_trial(trial.get("task", res["task"]), trial["config_id"], trial["seed"], trial)
                statuses[trial["status"]] = statuses.get(trial["status"], 0) + 1
                if trial["status"] == "failed" and not errors:
                    errors.append(str(trial.get("error")))
                bar.update(1)

        for res in run_jobs(jobs, workers, client):
            record(res)
        bar.close()
    finally:
        st.close()
        if client is not None:
            client.close()
    return CollectReport(Path(store), len(suite_obj), n_configs, total, len(trial_jobs),
                         n_done, time.perf_counter() - t0, statuses, errors[0] if errors else None)


def _group_jobs(trial_jobs: list[dict[str, Any]], family: str, max_group: int, sizes: dict[str, int],
                by: str = "config") -> list[dict[str, Any]]:
    """Trial jobs regrouped into population jobs of at most ``max_group`` members.

    ``by="config"``: one configuration across tasks (identical architectures, no padding), tasks
    sorted by training-set size so that a group's tasks need similar numbers of steps.
    ``by="task"``: per task, configurations that share a :func:`~metahpo_utils.population.group_key`
    (widths and MLP depths padded; padding changes float rounding, so with ``task`` a resumed
    collection can differ from an uninterrupted one in the last digits, which ``config`` avoids).
    """
    from .population import group_configs

    buckets: dict[Any, list[dict[str, Any]]] = {}
    for j in trial_jobs:
        buckets.setdefault(j["config_id"] if by == "config" else j["task"], []).append(j)
    out = []
    for js in buckets.values():
        if by == "config":
            js = sorted(js, key=lambda j: sizes.get(j["task"], 0))
            groups = [list(range(k, min(k + max_group, len(js)))) for k in range(0, len(js), max_group)]
        else:
            groups = group_configs([j["config"] for j in js], family, max_group)
        for idx in groups:
            first = js[idx[0]]
            out.append({**{k: v for k, v in first.items() if k not in ("config", "config_id")}, "kind": "group",
                        "tasks": [js[i]["task"] for i in idx], "config_ids": [js[i]["config_id"] for i in idx],
                        "configs": [js[i]["config"] for i in idx]})
    return out


def connect_scheduler(scheduler: str) -> Any:
    """A Dask client of an existing scheduler, or one clear error."""
    from distributed import Client

    try:
        return Client(scheduler, timeout="10s")
    except (OSError, TimeoutError, ValueError) as err:
        raise CollectError(f"cannot reach the Dask scheduler at scheduler={scheduler!r} ({type(err).__name__}: {err})") from None


#: glibc malloc trim and mmap thresholds of the LocalCluster's workers (bytes).
MALLOC_THRESHOLD = 256 * 2**20


def run_jobs(jobs: list[dict[str, Any]], workers: int, client: Any = None, fn: Callable[..., dict[str, Any]] = evaluate_job,
              shared: Any = None, on_error: Callable[[dict[str, Any], BaseException], Any] | None = None
              ) -> Iterator[dict[str, Any]]:
    """Yield ``fn(job)`` (or ``fn(job, shared)`` when ``shared`` is given: data every job reads, sent to each
    worker once) in completion order: in-process, on a new ``LocalCluster`` of ``workers`` processes, or on
    ``client``'s cluster; jobs start in list order. Only the driver (the caller) writes the store. A job whose
    worker dies is answered by :func:`_job_failed` (collection jobs) or raises (other functions). With
    ``on_error``, a job that raises (in-process too) or whose worker dies is answered by ``on_error(job, err)``,
    which may instead raise an error that names the job."""
    if not jobs:
        return
    args = () if shared is None else (shared,)
    if client is None and workers <= 1:
        for job in jobs:
            if on_error is None:
                yield fn(job, *args)
                continue
            try:
                res = fn(job, *args)
            except Exception as err:
                res = on_error(job, err)
            yield res
        return
    from distributed import Client, LocalCluster, as_completed

    cluster = own = None
    if client is None:
        import dask

        # Dask's default MALLOC_TRIM_THRESHOLD_ (64 KiB) also switches off glibc's adaptive mmap
        # threshold: every tensor over 128 KiB is then mapped and unmapped afresh, and training spends
        # more time in page faults than in arithmetic. Keep freed memory in the heap instead.
        # A worker holds one job at a time (saturation 1): when a job kills its worker, no other job was waiting
        # there, so only that job is counted as suspicious and ends in KilledWorker.
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": str(MALLOC_THRESHOLD),
                              "distributed.nanny.pre-spawn-environ.MALLOC_MMAP_THRESHOLD_": str(MALLOC_THRESHOLD),
                              "distributed.scheduler.worker-saturation": 1.0}):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        client = own = Client(cluster)
    try:
        # Bounded in-flight window: memory stays flat however many trials there are.
        n_workers = len(client.scheduler_info().get("workers", {})) or workers
        window = max(4, 4 * n_workers)
        if shared is not None:
            # a task rather than scattered data: when a worker dies the scheduler computes it again elsewhere, so
            # only the job that killed the worker fails (KilledWorker), never the jobs that merely read it
            args = (client.submit(_identity, shared, pure=False),)
        it = iter(jobs)
        pending = {client.submit(fn, j, *args, pure=False): j for j in _take(it, window)}
        ac = as_completed(list(pending))
        for fut in ac:
            job = pending.pop(fut)
            try:
                res = fut.result()
            except Exception as err:  # a worker died: record the trial(s) as failed, go on
                if on_error is not None:
                    res = on_error(job, err)
                elif fn is evaluate_job:
                    res = {"kind": job["kind"], "task": job["task"], **_job_failed(job, err)}
                else:
                    raise
            fut.release()
            yield res
            for j in _take(it, 1):
                nxt = client.submit(fn, j, *args, pure=False)
                pending[nxt] = j
                ac.add(nxt)
    finally:
        if own is not None:
            own.close()
        if cluster is not None:
            cluster.close()


def _identity(x: Any) -> Any:
    return x


def _take(it: Iterator[Any], n: int) -> list[Any]:
    out = []
    for _ in range(n):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out

