"""Batch reruns fanned out on a Ray cluster: each planned run is a Ray task that executes its
notebook with papermill (:func:`sdprobe.book.runs.execute_notebook`).

The batch itself is :func:`sdprobe.book.runs.run_batch` with ``cluster=ClusterOptions(...)``:
the same plan, file names, skipping of complete runs, kept partial notebooks and merged report
as on one machine; only the execution of the runs that are left moves to Ray. Every worker writes
its notebook straight to the run's output path, so that folder must be one every worker can
reach (on a real cluster a shared file system such as NFS or a mounted bucket, at the same path
on every node). Ray is optional (``pip install -e ".[cluster]"``) and imported only here, only
when a batch asks for it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ClusterError", "ClusterOptions", "execute_on_ray"]


class ClusterError(RuntimeError):
    """Ray is missing, or the cluster cannot be reached or cannot place a run."""


@dataclass(frozen=True)
class ClusterOptions:
    """Where and how the runs of a batch execute on Ray.

    Attributes:
        address: an existing cluster (``"auto"``, ``"ray://head:10001"``, ``"10.0.0.5:6379"``);
            None starts a local cluster for this batch and stops it afterwards.
        gpus_per_run: GPUs each run requests; None: one when the cluster has GPUs, else none.
        cpus_per_run: CPUs each run requests (a run's torch uses as many threads).
        retries: how many times a run whose worker died is started again (a notebook that
            fails is not retried: it fails the same way).
        local_cpus: CPUs of the local cluster started when ``address`` is None (None: all).
    """

    address: str | None = None
    gpus_per_run: float | None = None
    cpus_per_run: float = 1.0
    retries: int = 2
    local_cpus: int | None = None

    def __post_init__(self) -> None:
        if self.cpus_per_run <= 0 or (self.gpus_per_run is not None and self.gpus_per_run < 0) or self.retries < 0:
            raise ValueError(f"cpus_per_run must be positive, gpus_per_run and retries not negative: {self}")


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError('Ray is not installed: pip install -e ".[cluster]" (or conda env update -f environment.yml)') from None
    return ray


def _execute_run(source: str, output: str, parameters: dict[str, Any], threads: int) -> tuple[str, str | None] | None:
    """The Ray task: execute one notebook; a failure comes back as ``(summary, partial)``."""
    from sdprobe.book.runs import NotebookRunError, execute_notebook

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # the kernel inherits it
    try:
        execute_notebook(source, output, parameters, progress_bar=False)
    except NotebookRunError as err:
        return err.summary, None if err.partial is None else str(err.partial)
    return None


def execute_on_ray(runs: Sequence[Any], options: ClusterOptions) -> Iterator[tuple[Any, tuple[str, str | None] | None]]:
    """Execute ``runs`` (:class:`sdprobe.book.runs.Run`) as Ray tasks; yield ``(run, failure)`` in
    the order they finish, ``failure`` None or ``(summary, partial notebook)``.

    Raises:
        ClusterError: Ray is not installed, the address cannot be reached, or a run asks for more
            than the cluster has.
    """
    ray = _ray()
    started_here = _connect(ray, options)
    try:
        gpus = options.gpus_per_run
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        _check_fits(ray, options.cpus_per_run, gpus)
        task = ray.remote(_execute_run).options(num_cpus=options.cpus_per_run, num_gpus=gpus,
                                                max_retries=options.retries, retry_exceptions=False)
        pending = {task.remote(str(r.source), str(r.output), dict(r.parameters), max(1, int(options.cpus_per_run))): r
                   for r in runs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            run = pending.pop(done[0])
            try:
                yield run, ray.get(done[0])
            except ray.exceptions.RayError as err:  # the worker died more often than allowed
                yield run, (f"its Ray worker died {options.retries + 1} times ({type(err).__name__})", None)
    finally:
        if started_here:
            ray.shutdown()


def _connect(ray: Any, options: ClusterOptions) -> bool:
    """Join ``options.address`` or start a local cluster; True when this call started Ray."""
    if options.address and options.address != "auto":
        _check_reachable(options.address)
    if ray.is_initialized():  # a session already connected (a notebook, a test) is used as it is
        return False
    try:
        if options.address:
            ray.init(address=options.address, log_to_driver=False, logging_level="ERROR")
        else:
            ray.init(num_cpus=options.local_cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR",
                     runtime_env={"env_vars": {"PYTHONPATH": _library_path()}})
    except (ConnectionError, RuntimeError, ValueError) as err:
        where = options.address or "a local cluster"
        raise ClusterError(f"cannot reach the Ray cluster at {where}: {str(err).splitlines()[0]}") from None
    return True


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail fast on an address nothing answers at (Ray itself waits for minutes)."""
    import socket

    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"a Ray address is host:port, ray://host:port or auto, not {address!r}")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as err:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None


def _library_path() -> str:
    """This library's folder, ahead of whatever the workers' PYTHONPATH holds (an editable install
    already puts it there; a checkout run without installing does not)."""
    here = str(Path(__file__).resolve().parents[2])
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)


def _check_fits(ray: Any, cpus: float, gpus: float) -> None:
    have = ray.cluster_resources()
    for name, want in (("CPU", cpus), ("GPU", gpus)):
        if want > have.get(name, 0):
            raise ClusterError(f"each run asks for {want:g} {name}, the cluster has {have.get(name, 0):g}")
