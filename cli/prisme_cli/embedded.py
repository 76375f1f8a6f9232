"""`EmbeddedStore`: the MongoDB-compatible SecantusDB daemon, run as a child process.

`prisme serve` uses it when ``PRISME_MONGODB_URI`` is unset, and the test suite uses it as its
real store. It is only ever spoken to over TCP: the service never imports it.
"""

from __future__ import annotations

import ctypes
import logging
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Collection
from pathlib import Path

logger = logging.getLogger(__name__)

DAEMON = "secantusd-py"
# Without retryable writes SecantusDB keeps its write throughput; the idle limit stays under
# the daemon's own 300 s so the driver never reuses a socket the server has closed.
URI_OPTIONS = "retryWrites=false&maxIdleTimeMS=60000"


class EmbeddedStoreError(RuntimeError):
    pass


def free_port(host: str, taken: Collection[int] = ()) -> int:
    """A port free on ``host`` now, other than the ``taken`` ones (chosen but not yet bound:
    the system could hand one of them out again)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def exit_with_parent() -> None:
    """Runs in the child before exec: SIGTERM it if the parent dies, even by SIGKILL."""
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)


class EmbeddedStore:
    """One daemon on ``data_dir``. Port 0 picks a free port at the first start; a restart
    after `stop` keeps it, so clients reconnect to the same URI."""

    def __init__(
        self, data_dir: Path, cache_size: str = "256M", host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.data_dir = data_dir
        self.cache_size = cache_size
        self.host = host
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def uri(self) -> str:
        return f"mongodb://{self.host}:{self.port}/?{URI_OPTIONS}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self, timeout: float = 30.0, *, die_with_parent: bool = False) -> str:
        """Starts the daemon and returns its URI once it accepts connections."""
        executable = shutil.which(DAEMON, path=str(Path(sys.executable).parent)) or shutil.which(
            DAEMON
        )
        if executable is None:
            raise EmbeddedStoreError(
                f"{DAEMON} not found: install the 'embedded' extra or set PRISME_MONGODB_URI"
            )
        storage = self.data_dir / "store"
        storage.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "secantusd.toml"
        config.touch()  # an explicit, empty config: the daemon would otherwise search for one
        self.port = self.port or free_port(self.host)
        command = [
            executable,
            *("--config", str(config), "--host", self.host, "--port", str(self.port)),
            *("--storage-path", str(storage), "--cache-size", self.cache_size),
            *("--log-level", "WARNING"),
            # No replica-set advertisement, hence no oplog: nothing here reads one, and every
            # write would pay for an oplog entry (docs/performance.md, "Measured choices").
            "--standalone",
        ]
        with (self.data_dir / "secantusd.log").open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=exit_with_parent if die_with_parent else None,
                process_group=0,  # a terminal's Ctrl-C reaches the parent, which stops it last
            )
        self._wait_until_ready(timeout)
        logger.info("embedded store (pid %d) listening on %s:%d", self.pid, self.host, self.port)
        return self.uri

    def _wait_until_ready(self, timeout: float) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedStoreError(
                    f"{DAEMON} exited with {self._process.returncode}; "
                    f"see {self.data_dir / 'secantusd.log'}"
                )
            try:
                socket.create_connection((self.host, self.port), timeout=0.5).close()
            except OSError:
                time.sleep(0.05)
            else:
                return
        self.stop()
        raise EmbeddedStoreError(f"{DAEMON} did not accept connections within {timeout:.0f}s")

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout``; WiredTiger recovers either way."""
        process, self._process = self._process, None
        if process is not None:
            terminate(process, timeout, "the embedded store")


def terminate(process: subprocess.Popen[bytes], within: float, what: str) -> None:
    """SIGTERM ``process``, then SIGKILL it if it is still running after ``within`` seconds."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(within)
    except subprocess.TimeoutExpired:
        logger.warning("%s did not stop in %.0fs; killing it", what, within)
        process.kill()
        process.wait()
