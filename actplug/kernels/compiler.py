"""The compiled kernels of this process, built off the caller's thread, so that no call waits for one.

A kernel is a plain-math function of tensors: a declaration's fused CPU forms, a plugin's formula, its
vjp. The first call that wants one is told it is not ready and runs the lean eager math (same values,
same saved tensors). Meanwhile a worker thread imports what tracing needs; a later call traces the
kernel on its own thread (milliseconds: :func:`.build.trace`), and a compile server, a child process
(:mod:`.server`), compiles the graph with Inductor (C++ loops on the CPU, Triton on CUDA) into an
artifact in the cache folder (:func:`.build.cache_dir`); the next call loads it (milliseconds) and
every call after runs it. Nothing of Inductor runs on a thread beside the user's: its tracing patches
``torch.nn.Module.__call__`` for the whole process, and dynamo rewinds the global random generator.

Every varying size is symbolic and every parameter a 0-d tensor, so one kernel serves every shape and
parameter value (SMU's alpha too). An artifact is found again by any later process that traces the
same math (:func:`.build.digest`), so a warm process runs compiled kernels within a few calls.
``compile="sync"`` in :mod:`.settings` compiles on the calling thread instead (benchmarks, tests).
All state lives in one :class:`Compiler` object, :data:`compiler`.
"""

from __future__ import annotations

import atexit
import collections
import json
import logging
import os
import queue
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import build, settings

logger = logging.getLogger("actplug")

#: Returned by :meth:`Compiler.run` when the kernel did not serve the call.
MISS = object()


@dataclass(frozen=True)
class Job:
    """What to compile: ``fn`` (tensors in, a tuple of tensors out) for calls of ``signature``, traced
    with the sizes of the call that asked for it (``hints``)."""

    fn: Callable[..., tuple[torch.Tensor, ...]]
    label: str
    signature: build.Signature
    hints: tuple[tuple[int, ...], ...]
    device: str

    @classmethod
    def like(
        cls, fn: Callable[..., Any], label: str, args: Sequence[torch.Tensor], dynamic: Sequence[tuple[int, int, int]]
    ) -> Job:
        """A job for calls like ``args`` whose ``(argument, dimension, group)`` dimensions vary."""
        signature = build.Signature.of(args, dynamic)
        return cls(fn, label, signature, tuple(tuple(a.shape) for a in args), args[0].device.type)


@dataclass
class _Entry:
    job: Job
    state: str = "new"  # new -> building -> built -> ready, or failed
    path: Path | None = None
    compiled: Callable[..., Any] | None = None
    error: str = ""
    seconds: float = 0.0


class Compiler:
    """The compiled kernels of this process by key, the worker thread and the compile server.

    ``calls`` counts the calls each kernel (by label) served, for tests and benchmarks.
    """

    def __init__(self, directory: Path | None = None) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self._directory = directory
        self._entries: dict[Hashable, _Entry] = {}
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs: queue.Queue[Hashable] = queue.Queue()
        self._worker: threading.Thread | None = None
        self._server: subprocess.Popen | None = None
        self._server_ready = False
        self._preloaded = threading.Event()
        self._forked = False
        self._announced = False
        self._request = 0
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)
        atexit.register(self._stop_server)

    @property
    def directory(self) -> Path:
        """The folder of this compiler's artifacts."""
        return self._directory or build.cache_dir()

    # ------------------------------------------------------------------------------ calls
    def get(self, key: Hashable, make_job: Callable[[], Job]) -> Callable[..., Any] | None:
        """The compiled kernel for ``key``, or None if it is not ready yet (it is then on its way)."""
        entry = self._entries.get(key)
        if entry is not None and entry.state == "ready":
            return entry.compiled
        if entry is None:
            if self._forked:
                return None
            with self._lock:
                entry = self._entries.setdefault(key, _Entry(make_job()))
        if settings.current().compile == "sync":
            self._build_here(entry)
        else:
            self._advance(key, entry)
        return entry.compiled if entry.state == "ready" else None

    def run(self, key: Hashable, compiled: Callable[..., Any], args: Sequence[torch.Tensor]) -> Any:
        """``compiled(*args)`` as a tuple, or :data:`MISS` if the call does not fit the kernel's signature
        (its artifact has no guards) or the kernel fails (then it runs the eager math for good)."""
        entry = self._entries[key]
        if not entry.job.signature.accepts(args):
            return MISS
        try:
            with torch.no_grad():
                result = compiled(*args)
        except Exception as exc:
            self._fail(entry, f"failed ({_first_line(exc)})", "from now on it runs the eager math")
            if entry.path is not None:  # a later process compiles it again rather than meet the same
                entry.path.unlink(missing_ok=True)
            return MISS
        self.calls[entry.job.label] += 1
        return tuple(result)

    def wait(self, timeout: float | None = None) -> bool:
        """Bring every kernel met so far to ready (or failed), tracing and loading on this thread;
        False if ``timeout`` (seconds) ran out first."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def left() -> float | None:
            return None if deadline is None else max(0.0, deadline - time.monotonic())

        sync = settings.current().compile == "sync"
        if not sync and any(e.state == "new" for e in list(self._entries.values())):
            self._start_worker()
            if not self._preloaded.wait(left()):
                return False
        for key, entry in list(self._entries.items()):
            if settings.current().compile == "sync":
                self._build_here(entry)
            else:
                self._advance(key, entry)
        with self._changed:
            while any(e.state == "building" for e in self._entries.values()):
                if self._worker is None or (deadline is not None and time.monotonic() >= deadline):
                    return False
                self._changed.wait(min(0.5, left() or 0.5))
        for key, entry in list(self._entries.items()):
            self._advance(key, entry)
        return all(e.state in ("ready", "failed") for e in self._entries.values())

    def status(self) -> list[dict[str, Any]]:
        """One record per kernel: ``label``, ``state``, ``seconds`` (compiling it), ``error``."""
        return [
            {"label": e.job.label, "state": e.state, "seconds": round(e.seconds, 3), "error": e.error}
            for e in list(self._entries.values())
        ]

    def clear(self) -> None:
        """Forget every kernel (those being built finish first); the next calls bring them back."""
        with self._changed:
            while any(e.state == "building" for e in self._entries.values()) and self._worker is not None:
                self._changed.wait(0.5)
            self._entries.clear()
        self.calls.clear()

    # ------------------------------------------------------------------------------ building
    def _advance(self, key: Hashable, entry: _Entry) -> None:
        """Take ``entry`` one step further on the caller's thread, where it can go without waiting."""
        if entry.state == "new":
            self._start_worker()
            if self._preloaded.is_set() and not self._forked:
                self._trace_and_send(key, entry)
        if entry.state == "built":
            self._load(entry)

    def _trace(self, entry: _Entry) -> torch.fx.GraphModule | None:
        job = entry.job
        started = time.perf_counter()
        try:
            gm = build.trace(job.fn, job.signature, job.hints)
            entry.path = self.directory / (
                f"{job.label}-{build.digest(gm, job.signature, job.device, torch.get_num_threads())}.bin"
            )
        except Exception as exc:
            self._fail(entry, f"could not be traced ({_first_line(exc)})", "it runs the eager math")
            return None
        finally:
            entry.seconds += time.perf_counter() - started
        return gm

    def _trace_and_send(self, key: Hashable, entry: _Entry) -> None:
        gm = self._trace(entry)
        if gm is None:
            return
        graph = entry.path.with_suffix(".graph")
        try:
            graph.parent.mkdir(parents=True, exist_ok=True)
            partial = graph.with_name(f".{graph.name}.{os.getpid()}.partial")
            partial.write_bytes(build.graph_bytes(gm))
            os.replace(partial, graph)
        except Exception as exc:
            self._fail(entry, f"could not be saved for compiling ({_first_line(exc)})", "it runs the eager math")
            return
        if not self._announced:
            self._announced = True
            logger.info(
                "actplug: compiling fused kernels in a compile server; calls run the eager math until each is "
                "ready (actplug.kernels.wait() waits for them, ACTPLUG_CPU_KERNELS=eager turns them off)"
            )
        entry.state = "building"
        self._jobs.put(key)

    def _build_here(self, entry: _Entry) -> None:
        """``compile="sync"``: trace, compile (or find) and load ``entry`` on this thread."""
        if entry.state in ("ready", "failed", "building"):
            if entry.state == "building":
                self.wait()
            return
        if entry.state == "new":
            gm = self._trace(entry)
            if gm is None:
                return
            started = time.perf_counter()
            try:
                if not entry.path.exists():
                    build.compile_graph(gm, entry.job.signature, entry.job.hints, entry.job.device, entry.path)
                    logger.info("actplug: compiled kernel %s in %.1f s", entry.job.label, time.perf_counter() - started)
            except Exception as exc:
                self._fail(entry, f"could not be compiled ({_first_line(exc)})", "it runs the eager math")
                return
            finally:
                entry.seconds += time.perf_counter() - started
            entry.state = "built"
        self._load(entry)

    def _load(self, entry: _Entry, quiet: bool = False) -> None:
        if sys.is_finalizing() or not threading.main_thread().is_alive():
            return  # the interpreter is exiting: nothing will call the kernel, and loading it would fail
        try:
            entry.compiled = build.load(entry.path)
        except Exception as exc:
            if quiet:  # an artifact of another installation, say: it is compiled again
                entry.state = "failed"
                return
            self._fail(entry, f"could not be loaded ({_first_line(exc)})", "it runs the eager math")
            return
        entry.state = "ready"

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _fail(self, entry: _Entry, what: str, then: str) -> None:
        entry.state, entry.compiled, entry.error = "failed", None, what
        logger.warning("actplug: kernel %s %s; %s", entry.job.label, what, then)

    # ------------------------------------------------------------------------------ the worker
    def _start_worker(self) -> None:
        if self._worker is not None or self._forked:
            return
        with self._lock:
            if self._worker is None:
                # Not a daemon: at exit it notices the main thread is gone within a quarter second.
                self._worker = threading.Thread(target=self._work, name="actplug-compile", daemon=False)
                self._worker.start()

    def _work(self) -> None:
        try:
            if settings.current().compile != "sync":
                self._spawn_server()  # it starts (imports PyTorch) while this thread imports what tracing needs
            build.preload()
        except Exception as exc:  # tracing will fail and say why; the eager math serves meanwhile
            logger.debug("actplug: preparing the compiler failed: %s", _first_line(exc))
        finally:
            self._preloaded.set()
        while threading.main_thread().is_alive():
            try:
                key = self._jobs.get(timeout=0.25)
            except queue.Empty:
                continue
            entry = self._entries.get(key)
            if entry is None or entry.state != "building":
                continue
            if entry.path.exists():  # compiled by an earlier process: load it, no compiling
                self._load(entry, quiet=True)
                if entry.state == "ready":
                    self._notify()
                    continue
                entry.state = "building"
            started = time.perf_counter()
            answer = self._ask(entry)
            entry.seconds += time.perf_counter() - started
            if answer is None:
                break  # the process is ending
            if answer.get("ok"):
                if not answer.get("cached"):
                    logger.info("actplug: compiled kernel %s in %.1f s", entry.job.label, answer["seconds"])
                # Loading here keeps the caller's thread free of it; it traces nothing (no patched
                # nn.Module.__call__, no random state touched), it reads files and opens a library.
                self._load(entry)
            else:
                self._fail(entry, f"could not be compiled ({answer.get('error')})", "it runs the eager math")
                logger.debug("actplug: compile server traceback:\n%s", answer.get("traceback", ""))
            self._notify()
        self._stop_server()

    def _ask(self, entry: _Entry) -> dict[str, Any] | None:
        """Send ``entry`` to the compile server and wait for its answer (None if the process ends first)."""
        try:
            server = self._ensure_server()
            if server is None:
                return None
            self._request += 1
            request = {
                "id": self._request,
                "graph": str(entry.path.with_suffix(".graph")),
                "signature": [a.as_json() for a in entry.job.signature.args],
                "hints": [list(h) for h in entry.job.hints],
                "device": entry.job.device,
                "threads": torch.get_num_threads(),
                "out": str(entry.path),
            }
            server.stdin.write(json.dumps(request) + "\n")
            server.stdin.flush()
            while True:
                line = self._read_line(server)
                if line is None:
                    return None
                if not line:
                    return {"ok": False, "error": f"the compile server stopped (exit status {server.poll()})"}
                answer = json.loads(line)
                if answer.get("id") == request["id"]:
                    return answer
        except (OSError, ValueError) as exc:
            self._server = None
            return {"ok": False, "error": f"the compile server failed: {_first_line(exc)}"}

    def _spawn_server(self) -> None:
        if self._server is not None and self._server.poll() is None:
            return
        log = self.directory / "server.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as err:
            self._server = subprocess.Popen(
                [sys.executable, "-m", "actplug.kernels.server"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
                start_new_session=True,  # Ctrl-C at a terminal stops the parent, which stops the server
                env={**os.environ, "ACTPLUG_CACHE_DIR": str(self.directory)},
            )
        self._server_ready = False

    def _ensure_server(self) -> subprocess.Popen | None:
        if self._server is None or self._server.poll() is not None:
            self._spawn_server()
        if not self._server_ready:
            ready = self._read_line(self._server)
            if ready is None:
                return None
            if not ready:
                raise OSError(f"the compile server did not start (see {self.directory / 'server.log'})")
            self._server_ready = True
        return self._server

    @staticmethod
    def _read_line(server: subprocess.Popen) -> str | None:
        """The server's next line; '' if it stopped, None if this process is ending first."""
        while True:
            if not threading.main_thread().is_alive() and threading.current_thread() is not threading.main_thread():
                return None
            try:
                ready, _, _ = select.select([server.stdout], [], [], 0.25)
            except (OSError, ValueError):  # no select on this pipe (Windows): block
                ready = [server.stdout]
            if ready:
                return server.stdout.readline()

    def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None and server.poll() is None:
            try:
                os.killpg(server.pid, signal.SIGTERM)
            except (AttributeError, OSError):
                server.terminate()

    def _after_fork(self) -> None:
        # The worker and the server belong to the parent: the child keeps what is built and starts nothing.
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._jobs = queue.Queue()
        self._worker = None
        self._server = None
        self._forked = True
        for key, entry in list(self._entries.items()):
            if entry.state in ("new", "building"):
                del self._entries[key]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0]}" if text else type(exc).__name__


#: The process's compiler: every compiled kernel of actplug lives here.
compiler = Compiler()
