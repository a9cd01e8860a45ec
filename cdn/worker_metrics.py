"""One ``/_metrics`` for all the forked workers of a server (``cdn.roles.serve_forked``).

The workers share a port, and the kernel gives a scrape's connection to one of them, each
with a registry of its own: Prometheus saw the counters jump between the workers' values
(counter resets) and 1/N of the traffic. So, with more than one worker:

* before forking, the parent makes a private directory (``WorkerMetrics``, mode 0700) and
  removes it when it exits;
* each worker serves its own exposition on a Unix socket there (``<dir>/<worker>.sock``):
  connect, read to EOF; nothing is sent to it;
* the worker answering ``/_metrics`` asks every sibling at once, waits at most
  ``ASK_SECONDS`` for all of them, and answers every worker's samples labelled
  ``worker="1".."N"`` (``cdn.metrics_merge``), with ``cdn_metrics_worker_up{worker}`` 0 for
  a sibling that did not answer (exited, or its loop busy for longer).

With one process nothing of this exists and ``/_metrics`` is the registry's exposition,
unlabelled, as before.

Why not prometheus_client's multiprocess mode: it keeps every value in a memory-mapped file,
so each increment on the hit path would take its lock and write the file, and it cannot
read gauges computed at collection (``set_function``: the tiers' object and byte counts).
Asking the siblings costs only the scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator
from types import TracebackType

from aiohttp import web
from prometheus_client import CollectorRegistry

from cdn.metrics_merge import merged, parsed, rendered, sibling_answer

ASK_SECONDS = 1.0  # a scrape waits this long for slow siblings (Prometheus' default timeout: 10 s)
MAX_ANSWER_BYTES = 64 << 20  # far above a worker's exposition (tens of KiB)


class WorkerMetrics:
    """The directory of the workers' metric sockets: made in the parent before the fork
    (``with WorkerMetrics(n) as metrics:`` around ``serve_forked``), removed when the
    parent leaves the block. Forked workers leave by ``os._exit`` and never remove it."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        # 0700: ours only. A socket's path must fit in 108 bytes, so a long $TMPDIR is
        # passed over for /tmp rather than fail every worker's start.
        base = tempfile.gettempdir()
        self.directory = tempfile.mkdtemp(prefix="cdn-metrics-",
                                          dir=base if len(base) <= 64 else "/tmp")

    def socket_path(self, worker: int) -> str:
        return os.path.join(self.directory, f"{worker}.sock")

    def join(self, app: web.Application, worker: int, registry: CollectorRegistry) -> None:
        """In worker ``worker`` (1-based), before its ``app`` starts: serve ``registry`` to
        the siblings while the app runs, and gather theirs for its ``/_metrics``
        (``GATHERER``, which the metrics handlers use when it is set)."""
        gatherer = Gatherer(self, worker, registry)
        app[GATHERER] = gatherer
        app.cleanup_ctx.append(gatherer.serving)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> WorkerMetrics:
        return self

    def __exit__(self, _type: type[BaseException] | None, _value: BaseException | None,
                 _traceback: TracebackType | None) -> None:
        self.remove()


class Gatherer:
    """One worker's side: its socket for the siblings, and the merged exposition."""

    def __init__(self, group: WorkerMetrics, worker: int, registry: CollectorRegistry) -> None:
        self.group = group
        self.worker = worker
        self.registry = registry

    async def serving(self, _app: web.Application) -> AsyncIterator[None]:
        """A cleanup context: the socket is served while the app runs."""
        path = self.group.socket_path(self.worker)
        server = await asyncio.start_unix_server(self._answer, path)
        yield
        server.close()
        await server.wait_closed()
        with contextlib.suppress(OSError):
            os.unlink(path)

    async def _answer(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                      ) -> None:
        # Rendering collects the registry, which also flushes the hit path's pending counts.
        try:
            writer.write(sibling_answer(self.registry))
            await writer.drain()
        except ConnectionError:
            pass  # the asker gave up waiting
        finally:
            writer.close()

    async def exposition(self) -> bytes:
        """Every worker's samples, labelled by worker, in one exposition."""
        workers = range(1, self.group.workers + 1)
        answers = await asyncio.gather(*(self._ask(w) for w in workers))
        return rendered(merged(
            {str(w): parsed(answer) for w, answer in zip(workers, answers, strict=True)}))

    async def _ask(self, worker: int) -> bytes:
        """Worker ``worker``'s answer (``sibling_answer``); from a sibling, what arrived (maybe
        nothing) when it cannot be reached or is not done within ``ASK_SECONDS``."""
        if worker == self.worker:  # as a sibling would receive it, for one way to read all
            return sibling_answer(self.registry)
        received = bytearray()
        try:
            async with asyncio.timeout(ASK_SECONDS):
                path = self.group.socket_path(worker)
                reader, writer = await asyncio.open_unix_connection(path)
                try:
                    while len(received) < MAX_ANSWER_BYTES:
                        chunk = await reader.read(1 << 16)
                        if not chunk:
                            break
                        received += chunk
                finally:
                    writer.close()
        except (OSError, TimeoutError):
            pass  # exited (refused, or its socket gone) or slow: parsed() refuses the rest
        return bytes(received)


GATHERER = web.AppKey("worker_metrics_gatherer", Gatherer)
