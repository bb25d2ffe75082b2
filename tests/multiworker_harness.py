"""Start a local TensorFlow cluster of worker processes on 127.0.0.1 for a test, and always end it.

``LocalCluster(n)`` picks ``n`` free ports, gives each worker its own ``TF_CONFIG`` (``worker:0`` is the chief),
starts every worker in its own process group, and on leaving the ``with`` block -- normally, on a failed
assertion or on a timeout -- kills every group that is still alive, so no stray process outlives the test.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def free_ports(n: int) -> list[int]:
    """``n`` distinct ports the OS reports free (bound to port 0 together, then released)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps(
        {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": index}}
    )


class LocalCluster:
    """``n`` worker processes running ``argv(index)`` (a list; ``sys.executable`` is prepended), each with
    ``TF_CONFIG`` for its index, stdout/stderr to ``<logdir>/worker-<i>.{out,err}``."""

    def __init__(self, n: int, logdir: Path, env: dict | None = None):
        self.n, self.logdir = n, Path(logdir)
        self.logdir.mkdir(parents=True, exist_ok=True)
        self.ports = free_ports(n)
        self.env = dict(os.environ, **(env or {}))
        self.env["PYTHONPATH"] = str(REPO) + os.pathsep + self.env.get("PYTHONPATH", "")
        self.env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.env.setdefault("CUDA_VISIBLE_DEVICES", "")
        self.procs: list[subprocess.Popen] = []
        self._files = []

    def start(self, argv) -> LocalCluster:
        for i in range(self.n):
            out = open(self.logdir / f"worker-{i}.out", "w")
            err = open(self.logdir / f"worker-{i}.err", "w")
            self._files += [out, err]
            env = dict(self.env, TF_CONFIG=tf_config(self.ports, i))
            self.procs.append(
                subprocess.Popen(
                    [sys.executable, *argv(i)], stdout=out, stderr=err, env=env, cwd=str(REPO), start_new_session=True
                )
            )
        return self

    def wait(self, timeout: float) -> list[int]:
        """Exit codes of all workers; kills them all and raises ``TimeoutError`` (with their logs' tails)
        when any is still running after ``timeout`` seconds."""
        end = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill()
                raise TimeoutError(f"workers still running after {timeout:.0f} s\n{self.logs()}") from None
        return [p.returncode for p in self.procs]

    def wait_for(self, predicate, timeout: float, poll: float = 0.2) -> None:
        """Poll ``predicate()`` until true; raises (workers killed) on timeout or when a worker exits first."""
        end = time.monotonic() + timeout
        while not predicate():
            if any(p.poll() is not None for p in self.procs):
                self.kill()
                raise RuntimeError(f"a worker exited before the condition held\n{self.logs()}")
            if time.monotonic() > end:
                self.kill()
                raise TimeoutError(f"condition not reached after {timeout:.0f} s\n{self.logs()}")
            time.sleep(poll)

    def kill(self) -> None:
        """SIGKILL every worker's process group still alive (a crash: nothing is flushed or cleaned)."""
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not refused
                pass

    def alive(self) -> list[int]:
        return [p.pid for p in self.procs if p.poll() is None]

    def logs(self, tail: int = 3000) -> str:
        for f in self._files:
            f.flush()
        parts = []
        for i in range(self.n):
            for kind in ("out", "err"):
                text = (self.logdir / f"worker-{i}.{kind}").read_text(errors="replace")
                parts.append(f"--- worker {i} std{kind} ---\n{text[-tail:]}")
        return "\n".join(parts)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        for f in self._files:
            f.close()
        return False
