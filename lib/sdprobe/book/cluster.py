"""Batch reruns fanned out on a Ray cluster: each planned run is a Ray task that executes its
notebook with papermill (:func:`sdprobe.book.execution.execute_notebook`).

The batch itself is :func:`sdprobe.book.runs.run_batch` with ``cluster=ClusterOptions(...)``:
the same plan, file names, skipping of complete runs, kept partial notebooks and merged report
as on one machine; only the execution of the runs that are left moves to Ray. Every worker writes
its notebook straight to the run's output path, so that folder must be one every worker can
reach (on a real cluster a shared file system such as NFS or a mounted bucket, at the same path
on every node). Ray is optional (``pip install -e ".[cluster]"``) and imported only here, only
when a batch asks for it.
"""

from __future__ import annotations

import math
import os
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ClusterError", "ClusterOptions", "check_ray_head", "execute_on_ray", "parse_address"]


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
        connect_timeout: seconds to wait for an existing cluster to answer as a Ray head.
    """

    address: str | None = None
    gpus_per_run: float | None = None
    cpus_per_run: float = 1.0
    retries: int = 2
    local_cpus: int | None = None
    connect_timeout: float = 30.0

    def __post_init__(self) -> None:
        def number(name: str, value: Any, low: float, *, strict: bool, whole: bool = False) -> None:
            kind = "whole number" if whole else "number"
            ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value) \
                and (value > low if strict else value >= low) and (not whole or float(value).is_integer())
            if not ok:
                bound = f"{'above' if strict else 'at least'} {low:g}"
                raise ValueError(f"{name} must be a finite {kind} {bound}, not {value!r}")

        number("cpus_per_run", self.cpus_per_run, 0, strict=True)
        if self.gpus_per_run is not None:
            number("gpus_per_run", self.gpus_per_run, 0, strict=False)
        number("retries", self.retries, 0, strict=False, whole=True)
        number("connect_timeout", self.connect_timeout, 0, strict=True)
        if self.local_cpus is not None:
            number("local_cpus", self.local_cpus, 0, strict=True, whole=True)
        if self.address is not None:
            if not isinstance(self.address, str) or not self.address.strip():
                raise ValueError(f"a Ray address is host:port, ray://host:port or auto, not {self.address!r}")
            if self.address != "auto":
                try:
                    parse_address(self.address)
                except ClusterError as err:
                    raise ValueError(str(err)) from None


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError('Ray is not installed: pip install -e ".[cluster]" (or conda env update -f environment.yml)') from None
    return ray


def parse_address(address: str) -> tuple[str, int]:
    """``(host, port)`` of a Ray address: ``host:port``, ``ray://host:port``, ``[::1]:6379``.

    Raises:
        ClusterError: not of that form, or a port outside 1–65535.
    """
    form = f"a Ray address is host:port, ray://host:port or auto, not {address!r}"
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]  # an IPv6 literal
    if not host or not port.isdigit():
        raise ClusterError(form)
    if not 1 <= int(port) <= 65535:
        raise ClusterError(f"{address}: port {int(port)} is outside 1–65535")
    return host, int(port)


def _execute_run(
    source: str, output: str, parameters: dict[str, Any], threads: int, arithmetic: str | None
) -> tuple[str, str | None] | None:
    """The Ray task: execute one notebook; a failure comes back as ``(summary, partial)``."""
    from sdprobe.book.execution import NotebookRunError, execute_notebook

    os.environ.setdefault("OMP_NUM_THREADS", str(threads))  # the kernel inherits it
    try:
        execute_notebook(source, output, parameters, progress_bar=False, arithmetic=arithmetic)
    except NotebookRunError as err:
        return err.summary, None if err.partial is None else str(err.partial)
    return None


def execute_on_ray(
    runs: Sequence[Any], options: ClusterOptions, *, arithmetic: str | None = None
) -> Iterator[tuple[Any, tuple[str, str | None] | None]]:
    """Execute ``runs`` (:class:`sdprobe.book.plan.Run`) as Ray tasks; yield ``(run, failure)`` in
    the order they finish, ``failure`` None or ``(summary, partial notebook)``. Each kernel gets
    ``arithmetic`` (:func:`sdprobe.book.execution.execute_notebook`).

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
        threads = max(1, int(options.cpus_per_run))
        pending = {task.remote(str(r.source), str(r.output), dict(r.parameters), threads, arithmetic): r for r in runs}
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
        check_ray_head(options.address, timeout=min(5.0, options.connect_timeout))
    if ray.is_initialized():  # a session already connected (a notebook, a test) is used as it is
        return False
    where = options.address or "a local cluster"
    if options.address:
        kwargs: dict[str, Any] = {"address": options.address}
    else:
        kwargs = {"num_cpus": options.local_cpus, "include_dashboard": False,
                  "runtime_env": {"env_vars": {"PYTHONPATH": _library_path()}}}
    outcome: dict[str, BaseException | None] = {}

    def init() -> None:
        try:
            ray.init(log_to_driver=False, logging_level="ERROR", **kwargs)
            outcome["error"] = None
        except BaseException as err:  # handed to the caller's thread
            outcome["error"] = err

    with _quiet_stderr():  # Ray's core prints its connection warnings straight to the terminal
        worker = threading.Thread(target=init, name="ray-init", daemon=True)
        worker.start()
        worker.join(options.connect_timeout if options.address else None)
    if "error" not in outcome:
        raise ClusterError(f"{where} did not answer as a Ray head within {options.connect_timeout:g} s")
    err = outcome["error"]
    if err is not None:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ClusterError(f"cannot reach the Ray cluster at {where}: {first}") from None
    return True


#: The client's opening of an HTTP/2 connection and an empty SETTINGS frame (RFC 9113 §3.4).
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def check_ray_head(address: str, timeout: float = 5.0) -> None:
    """Fail fast, in one line, on an address where no Ray head listens.

    A Ray head (its GCS, or the Ray Client server behind ``ray://``) is a gRPC server: it answers
    an HTTP/2 preface with a SETTINGS frame. A closed port, an address nothing routes to, a web
    server or a silent listener is refused within ``timeout`` seconds, where Ray itself would
    wait for minutes.

    Raises:
        ClusterError: the address is malformed, unreachable, or does not speak gRPC.
    """
    host, port = parse_address(address)
    try:
        with socket.create_connection((host, port), timeout=timeout) as conn:
            conn.settimeout(timeout)
            conn.sendall(_HTTP2_PREFACE)
            reply = conn.recv(64)
    except socket.timeout:
        raise ClusterError(f"{address} does not answer as a Ray head (no reply within {timeout:g} s)") from None
    except OSError as err:
        raise ClusterError(f"cannot reach the Ray cluster at {address}: {err.strerror or err}") from None
    if len(reply) < 4 or reply[3] != 0x04:  # a frame header whose type is SETTINGS
        if not reply:
            raise ClusterError(f"{address} is not a Ray head: it closed the connection without a word")
        seen = reply.decode("latin-1").split("\r")[0].split("\n")[0][:40]
        raise ClusterError(f"{address} is not a Ray head: it does not speak gRPC ({seen!r})")


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Send file descriptor 2 (what C++ code writes) to nowhere for the block."""
    import sys

    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (a notebook's captured one): nothing to silence
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


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
