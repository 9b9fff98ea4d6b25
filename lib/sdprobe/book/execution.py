"""Execute one notebook with papermill: atomically, on the pinned arithmetic, leaving nothing behind.

A final ``.ipynb`` exists only after a successful run; a failed run keeps what it executed as
``<name>.failed.ipynb``. Every kernel starts with the environment of :mod:`sdprobe.arithmetic`
and writes its connection file into a folder of this process's own, which goes when the process
ends, even by a signal (:func:`remove_kernel_files`), and which the next process removes if the
last one was killed outright.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import tempfile
import threading
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nbformat

from sdprobe.arithmetic import pinned_environment

__all__ = ["NotebookRunError", "execute_notebook", "failed_path", "file_mode", "partial_pattern",
           "remove_kernel_files", "stop_kernels", "terminate_on_signals"]

_FAILED = ".failed.ipynb"
#: A kernel's environment for outputs that are committed or compared: no progress bars.
QUIET = {"TQDM_DISABLE": "1", "SDPROBE_PROGRESS": "0"}


class NotebookRunError(RuntimeError):
    """A notebook failed to execute.

    Attributes:
        source: the jupytext source that was executed.
        output: the final path that was NOT written.
        partial: the partial executed notebook (``<name>.failed.ipynb``), or None if execution
            never produced one (e.g. the kernel did not start).
        summary: one line saying where and why it failed.
    """

    def __init__(self, source: Path, output: Path, partial: Path | None, summary: str) -> None:
        self.source, self.output, self.partial, self.summary = source, output, partial, summary
        where = f"; partial notebook: {partial}" if partial else ""
        super().__init__(f"{source.name}: {summary}{where}")


def failed_path(output: Path | str) -> Path:
    """Where a failed run's partial notebook is kept: ``<name>.failed.ipynb`` beside ``output``."""
    output = Path(output)
    return output.with_name(output.name.removesuffix(".ipynb") + _FAILED)


def partial_pattern(output: Path | str) -> re.Pattern[str]:
    """The names of the in-progress files :func:`execute_notebook` writes beside ``output``."""
    return re.compile(rf"^\.{re.escape(Path(output).stem)}\.[a-z0-9_]{{8}}\.partial\.ipynb$")


def file_mode() -> int:
    """The mode a new file gets under this process's umask (temporary files start at 0600)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def execute_notebook(
    source_py: Path | str,
    output_ipynb: Path | str,
    parameters: Mapping[str, Any] | None = None,
    *,
    kernel_name: str = "python3",
    progress_bar: bool | None = None,
    cwd: Path | str | None = None,
    arithmetic: str | None = None,
    quiet: bool = False,
) -> Path:
    """Execute a jupytext ``.py`` notebook with papermill and write the result atomically.

    The notebook runs from its own folder (as nbval does) unless ``cwd`` says otherwise. It is
    written to a hidden temporary file beside ``output_ipynb`` and moved into place only on
    success, so ``output_ipynb`` is never half-written and keeps its old content on failure.
    Its kernel starts with the pinned arithmetic of :mod:`sdprobe.arithmetic` (the committed
    outputs' digits on any x86-64 processor) unless ``arithmetic="native"``. Files get the
    umask's mode.

    Args:
        source_py: the jupytext percent-format source.
        output_ipynb: where the executed notebook goes (its folder is created).
        parameters: papermill parameters; None or empty injects no cell (the defaults run).
        kernel_name: the Jupyter kernel to run.
        progress_bar: papermill's per-cell bar; defaults to :func:`sdprobe.progress.progress_enabled`.
        cwd: working directory of the kernel; defaults to the source's folder.
        arithmetic: ``"avx2"`` (pinned) or ``"native"``; defaults to ``$SDPROBE_ARITHMETIC``,
            else ``"avx2"``.
        quiet: the kernel draws no progress bars (their text lands in stderr outputs, which
            committed notebooks must not hold).

    Returns:
        ``output_ipynb`` as a Path.

    Raises:
        NotebookRunError: execution failed; the partial notebook is kept as
            :func:`failed_path` ``(output_ipynb)`` when there is one.
    """
    import jupytext
    import papermill

    from sdprobe.progress import progress_enabled

    source, output = Path(source_py).resolve(), Path(output_ipynb).resolve()
    if output.suffix != ".ipynb":
        raise ValueError(f"the output must be an .ipynb file, got {output}")
    env = pinned_environment(arithmetic=arithmetic)
    if quiet:
        env.update(QUIET)
    kernel_manager = _kernel_manager_with(env)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=output.parent, prefix=f".{output.stem}.", suffix=".partial.ipynb")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        nb = papermill.execute_notebook(
            jupytext.read(source),
            str(tmp),
            parameters=dict(parameters or {}),
            kernel_name=kernel_name,
            language="python",
            progress_bar=progress_enabled() if progress_bar is None else progress_bar,
            cwd=str(cwd or source.parent),
            kernel_manager_class=kernel_manager,
        )
        _stamp_paths(nb, source, output)
        nbformat.write(nb, str(tmp))
        os.chmod(tmp, file_mode())
        os.replace(tmp, output)
    except BaseException as err:
        partial = _keep_partial(tmp, source, output)
        if not isinstance(err, Exception):  # KeyboardInterrupt, SystemExit: keep them as they are
            raise
        raise NotebookRunError(source, output, partial, _summarise(err)) from err
    stale = failed_path(output)
    if _written_here(stale):
        stale.unlink()
    return output


def _stamp_paths(nb: nbformat.NotebookNode, source: Path, output: Path) -> None:
    """Record readable, machine-independent paths (papermill stores the temp path and, for an
    in-memory input, the whole input notebook)."""
    meta = nb.metadata.setdefault("papermill", {})
    meta["input_path"] = os.path.relpath(source, output.parent)
    meta["output_path"] = output.name


def _keep_partial(tmp: Path, source: Path, output: Path) -> Path | None:
    """Move what papermill wrote so far to ``<name>.failed.ipynb``; drop the temp file."""
    target = failed_path(output)
    try:
        nb = nbformat.read(str(tmp), as_version=4)
    except Exception:  # nothing (readable) was written: the kernel never ran a cell
        tmp.unlink(missing_ok=True)
        return None
    _stamp_paths(nb, source, output)
    nb.metadata["papermill"]["output_path"] = target.name
    nbformat.write(nb, str(tmp))
    os.chmod(tmp, file_mode())
    os.replace(tmp, target)
    return target


def _written_here(failed: Path) -> bool:
    """True when ``failed`` is a partial notebook this module kept (it names itself)."""
    if not failed.is_file():
        return False
    try:
        return nbformat.read(str(failed), as_version=4).metadata["papermill"]["output_path"] == failed.name
    except Exception:
        return False


def _summarise(err: BaseException) -> str:
    from papermill.exceptions import PapermillExecutionError

    if isinstance(err, PapermillExecutionError):
        value = " ".join(str(err.evalue).split())
        return f"In [{err.exec_count}]: {err.ename}: {value}"
    return f"{type(err).__name__}: {' '.join(str(err).split())}"


# ----------------------------------------------------------------------------- kernels

_KERNELS: dict[str, Any] = {}  # connection file → kernel manager, for the kernels running now
_KERNELS_LOCK = threading.Lock()


def _kernel_manager_with(env: Mapping[str, str]) -> type:
    """A jupyter_client kernel manager whose kernels start with exactly ``env`` (papermill hands
    the class to nbclient), so runs in parallel threads never share a changed ``os.environ``.
    Its kernels talk over CurveZMQ where the kernel and pyzmq support it (ipykernel warns, on
    every start, about plain TCP), and keep their connection files in :func:`_kernel_dir`."""
    import zmq
    from jupyter_client import AsyncKernelManager

    encrypt = {"transport_encryption": "auto"} \
        if zmq.has("curve") and "transport_encryption" in AsyncKernelManager.class_trait_names() else {}

    class KernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            self.connection_file = str(_kernel_dir() / f"kernel-{uuid.uuid4().hex}.json")
            with _KERNELS_LOCK:
                _KERNELS[self.connection_file] = self
            await super().start_kernel(**{**kw, **encrypt, "env": dict(env)})

        async def shutdown_kernel(self, *args: Any, **kw: Any) -> None:
            try:
                await super().shutdown_kernel(*args, **kw)
            finally:
                with _KERNELS_LOCK:
                    _KERNELS.pop(self.connection_file, None)

    return KernelManager


def _kernels_root() -> Path:
    return Path(tempfile.gettempdir()) / f"sdprobe-kernels-{os.getuid() if hasattr(os, 'getuid') else 'user'}"


def _kernel_dir() -> Path:
    """This process's folder of kernel connection files; folders of processes that are gone
    (killed outright, with no chance to clean up) are removed the first time it is made."""
    folder = _kernels_root() / str(os.getpid())
    if not folder.is_dir():
        root = _kernels_root()
        if root.is_dir():
            for other in root.iterdir():
                if other.name.isdigit() and not _alive(int(other.name)):
                    shutil.rmtree(other, ignore_errors=True)
        folder.mkdir(parents=True, mode=0o700, exist_ok=True)
    return folder


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_kernels() -> None:
    """Kill the kernels this process started that still run (after an interrupt or a signal)."""
    with _KERNELS_LOCK:
        managers = list(_KERNELS.values())
        _KERNELS.clear()
    for km in managers:
        process = getattr(getattr(km, "provisioner", None), "process", None)
        if process is not None and process.poll() is None:
            process.kill()


def remove_kernel_files() -> None:
    """Stop this process's kernels and remove its folder of connection files."""
    stop_kernels()
    shutil.rmtree(_kernels_root() / str(os.getpid()), ignore_errors=True)


def terminate_on_signals() -> None:
    """Turn SIGTERM (and SIGHUP) into KeyboardInterrupt in this process, so that a batch ended by
    a signal unwinds like Ctrl-C: partial notebooks kept, kernels stopped, their files removed."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), interrupt)
