"""`Child`: a process of the service that `prisme serve` starts, watches, starts again when it
dies, and stops.

Children run ``prisme core`` or ``prisme facade`` in a process group of their own, so a signal
to the supervisor's group (a terminal's Ctrl-C) reaches only the supervisor, which stops them
in order. Each child asks the kernel for SIGTERM when the supervisor dies, even by SIGKILL
(`die_with_parent`, run by the child itself: a ``preexec_fn`` is unsafe once the supervisor
has gRPC threads, and it starts children again while it serves).

A child that dies is started again, at once the first time, then after a pause that doubles
(up to `MOST_PAUSE`) while it keeps dying within `STEADY` seconds of its start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from prisme_cli.embedded import exit_with_parent

logger = logging.getLogger(__name__)

STARTUP = 30.0
"""Longest a child may take to be ready."""
STEADY = 10.0
"""A child that ran this long before it died is started again at once."""
MOST_PAUSE = 30.0


class ChildError(RuntimeError):
    pass


def command(*arguments: str) -> list[str]:
    """The command line of a ``prisme`` subcommand run by this interpreter."""
    return [sys.executable, "-m", "prisme_cli.main", *arguments]


def die_with_parent(parent: int) -> None:
    """In a child: SIGTERM when ``parent`` dies; exits now if it already has."""
    exit_with_parent()
    if os.getppid() != parent:
        sys.exit(1)


@dataclass
class Child:
    name: str
    """As its log lines name it: ``core-0``, ``facade-1``."""
    argv: Sequence[str]
    env: Mapping[str, str]
    ready: Callable[[], bool]
    """Whether the child has started serving (it accepts connections)."""
    metrics: str
    """Where its Prometheus metrics are read."""
    before_start: Callable[[], None] = lambda: None
    process: subprocess.Popen[bytes] | None = None
    _started: float = 0.0
    _pause: float = field(default=0.0, repr=False)

    def start(self) -> None:
        self.before_start()
        self.process = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, process_group=0
        )
        self._started = time.monotonic()

    async def until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP
        while not self.ready():
            self._check_alive()
            if time.monotonic() > deadline:
                raise ChildError(f"{self.name} did not start within {STARTUP:.0f}s")
            await asyncio.sleep(0.05)

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.poll() is not None:
            raise ChildError(f"{self.name} exited with {self.process.returncode} at start")

    async def exited(self) -> int:
        """The child's exit status, once it has exited (woken by the kernel: a pidfd)."""
        assert self.process is not None
        try:
            fd = os.pidfd_open(self.process.pid)
        except ProcessLookupError:
            return self.process.wait()
        loop = asyncio.get_running_loop()
        gone = loop.create_future()
        loop.add_reader(fd, _settle, gone)
        try:
            await gone
        finally:
            loop.remove_reader(fd)
            os.close(fd)
        return self.process.wait()

    async def keep(self) -> None:
        """Starts the child again each time it dies, until cancelled."""
        while True:
            status = await self.exited()
            ran = time.monotonic() - self._started
            self._pause = 0.0 if ran > STEADY else min(max(self._pause * 2, 0.5), MOST_PAUSE)
            logger.error(
                "%s exited with %s after %.1fs; starting it again in %.1fs",
                self.name, status, ran, self._pause,
            )  # fmt: skip
            await asyncio.sleep(self._pause)
            self.start()
            with contextlib.suppress(ChildError):
                await self.until_ready()
                logger.info("%s is serving again", self.name)

    def signal_stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()

    def stop(self, within: float) -> None:
        """SIGTERM, then SIGKILL if it is still running after ``within`` seconds."""
        self.signal_stop()
        if self.process is None:
            return
        try:
            self.process.wait(within)
        except subprocess.TimeoutExpired:
            logger.warning("%s did not stop in %.0fs; killing it", self.name, within)
            self.process.kill()
            self.process.wait()


def _settle(gone: asyncio.Future[None]) -> None:
    if not gone.done():
        gone.set_result(None)


def stop_all(children: Sequence[Child], within: float) -> None:
    """Stops ``children`` together: each gets SIGTERM at once, all get ``within`` seconds."""
    for child in children:
        child.signal_stop()
    deadline = time.monotonic() + within
    for child in children:
        child.stop(max(0.0, deadline - time.monotonic()))
