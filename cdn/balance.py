"""Keeping the connections of forked ``reuse_port`` workers level.

``SO_REUSEPORT`` gives each new connection to one worker's listening socket by a hash of its
addresses. For many short connections that evens out; for a few long keep-alive ones (a
load balancer's pool, a video player, wrk's 64 connections) it does not: 64 connections split
27/37 in one of three tries here, and the worker holding 37 answers each of them later than
an even split would, which is what a client's p99 sees.

So each worker, when a connection arrives, asks a ledger shared by the workers where it
should be served (``destination``): here, unless this worker already holds more than
``slack`` connections above the least-loaded one; then it is passed to that worker as a file
descriptor over a Unix datagram socket (``SCM_RIGHTS``), before a byte of it has been read,
and that worker starts it as if it had accepted it. A connection moves at most once.

The ledger counts a connection when it is placed and forgets it at the next sweep after its
transport closes (every ``SWEEP_SECONDS``): closes are seen a little late, arrivals at once.
A worker that cannot take the ledger's lock in time (a worker died holding it) serves the
connection itself, uncounted; one whose inbox is gone (it exited) is never chosen again.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import socket
from collections.abc import Callable, Sequence
from typing import Any

from cdn.roles import Front

log = logging.getLogger("cdn.balance")

SWEEP_SECONDS = 0.5
LOCK_TIMEOUT = 0.05
RECEIVE_BATCH = 64  # descriptors taken from the inbox per wake-up, so other work goes on
GONE = 1 << 62  # the load of a worker that exited: never the least loaded


def destination(loads: Sequence[int], me: int, slack: int) -> int:
    """Where a connection arriving at worker ``me`` is served: ``me`` unless it holds more
    than ``slack`` connections above the least-loaded worker (the lowest index on a tie)."""
    low = min(range(len(loads)), key=loads.__getitem__)
    return me if loads[me] <= loads[low] + slack else low


class Ledger:
    """Connections held per worker, in memory shared by the forked workers."""

    def __init__(self, workers: int) -> None:
        fork = multiprocessing.get_context("fork")
        self._loads = fork.Array("q", workers, lock=fork.Lock())

    def place(self, me: int, slack: int) -> int | None:
        """Count a new connection where ``destination`` says and return that worker; ``None``
        (uncounted, serve it here) when the lock is not had in ``LOCK_TIMEOUT``."""
        lock = self._loads.get_lock()
        if not lock.acquire(timeout=LOCK_TIMEOUT):
            return None
        try:
            loads: Any = self._loads.get_obj()
            target = destination(loads, me, slack)
            loads[target] += 1
            return target
        finally:
            lock.release()

    def release(self, worker: int, count: int = 1) -> None:
        self._update(worker, lambda load: max(0, load - count))

    def add(self, worker: int) -> None:
        self._update(worker, lambda load: load + 1)

    def gone(self, worker: int) -> None:
        self._update(worker, lambda _load: GONE)

    def loads(self) -> list[int]:
        return list(self._loads.get_obj())  # a snapshot; a racing update is fine

    def _update(self, worker: int, change: Callable[[int], int]) -> None:
        lock = self._loads.get_lock()
        if not lock.acquire(timeout=LOCK_TIMEOUT):
            return
        try:
            loads: Any = self._loads.get_obj()  # unsynchronised: the lock is held
            if loads[worker] != GONE:
                loads[worker] = change(loads[worker])
        finally:
            lock.release()


class Balancer:
    """The ledger and one inbox per worker, made before the workers are forked."""

    def __init__(self, workers: int, *, slack: int = 1) -> None:
        self.workers = workers
        self.slack = slack
        self.ledger = Ledger(workers)
        self._inboxes: list[tuple[socket.socket, socket.socket]] = []
        for _ in range(workers):
            receive, send = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
            receive.setblocking(False)
            send.setblocking(False)
            self._inboxes.append((receive, send))

    def for_worker(self, me: int) -> tuple[socket.socket, list[socket.socket]]:
        """In worker ``me`` after the fork: its inbox and every worker's sending end. The
        other inboxes are closed here, so a worker's inbox dies with it and sends to it fail
        instead of piling up."""
        for index, (receive, _send) in enumerate(self._inboxes):
            if index != me:
                receive.close()
        return self._inboxes[me][0], [send for _receive, send in self._inboxes]

    def close_parent_copies(self) -> None:
        """In the parent once every worker is forked: it passes no connections."""
        for receive, send in self._inboxes:
            receive.close()
            send.close()


class BalancedFront:
    """A worker's front: places each arriving connection (see the module docstring) and
    serves the ones it keeps, or is sent, with ``inner``'s protocols."""

    def __init__(self, inner: Front, balancer: Balancer, me: int) -> None:
        self.inner = inner
        self.me = me
        self.slack = balancer.slack
        self.ledger = balancer.ledger
        self.inbox, self.outboxes = balancer.for_worker(me)
        self.loop = asyncio.get_running_loop()
        self.live: set[Any] = set()  # transports counted in the ledger as this worker's
        self.starting: set[asyncio.Task[None]] = set()
        self.moved_out = 0
        self.moved_in = 0
        self.loop.add_reader(self.inbox.fileno(), self._receive)
        self.sweeper = self.loop.call_later(SWEEP_SECONDS, self._sweep)

    def __call__(self) -> asyncio.Protocol:
        return _Arrival(self)

    def close_connections(self) -> None:
        log.info("worker %d passed %d connections to other workers and took %d from them",
                 self.me + 1, self.moved_out, self.moved_in)
        self.loop.remove_reader(self.inbox.fileno())
        self.sweeper.cancel()
        for task in self.starting:
            task.cancel()
        self.inner.close_connections()

    def arrived(self, transport: Any) -> None:
        target = self.ledger.place(self.me, self.slack)
        if target is not None and target != self.me:
            if self._send(target, transport):
                self.moved_out += 1
                transport.abort()  # closes this process's descriptor; the peer's is open
                return
            self.ledger.release(target)
            self.ledger.add(self.me)
        protocol = self.inner()
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        if target is not None:
            self.live.add(transport)

    def _send(self, target: int, transport: Any) -> bool:
        sock = transport.get_extra_info("socket")
        if sock is None:
            return False
        try:
            socket.send_fds(self.outboxes[target], [b"c"], [sock.fileno()])
        except BlockingIOError:  # its inbox is full: it is busy enough
            return False
        except OSError as exc:  # its inbox is closed: that worker exited
            log.warning("worker %d takes no connections (%r)", target + 1, exc)
            self.ledger.gone(target)
            return False
        return True

    def _receive(self) -> None:
        for _ in range(RECEIVE_BATCH):
            try:
                _data, fds, _flags, _address = socket.recv_fds(self.inbox, 1, 1)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("reading the connection inbox failed: %r", exc)
                return
            for fd in fds:
                task = self.loop.create_task(self._start(socket.socket(fileno=fd)))
                self.starting.add(task)
                task.add_done_callback(self.starting.discard)

    async def _start(self, sock: socket.socket) -> None:
        """Serve a connection another worker placed here (already counted as ours)."""
        try:
            sock.setblocking(False)
            transport, _protocol = await self.loop.connect_accepted_socket(self.inner, sock)
        except (OSError, asyncio.CancelledError) as exc:
            sock.close()
            self.ledger.release(self.me)
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("starting a connection from another worker failed: %r", exc)
            return
        self.moved_in += 1
        self.live.add(transport)

    def _sweep(self) -> None:
        closed = [transport for transport in self.live if transport.is_closing()]
        if closed:
            self.live.difference_update(closed)
            self.ledger.release(self.me, len(closed))
        self.sweeper = self.loop.call_later(SWEEP_SECONDS, self._sweep)


class _Arrival(asyncio.Protocol):
    """A connection's protocol until its worker is chosen: it then gives the transport to
    the real protocol (before any read, which uvloop starts after ``connection_made``)."""

    __slots__ = ("front",)

    def __init__(self, front: BalancedFront) -> None:
        self.front = front

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.front.arrived(transport)
