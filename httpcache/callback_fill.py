"""A cache fill driven by the upstream connection's callbacks: no task, no future.

Why: a miss that runs its flight in a task (``CacheEngine.inline_flight``) pays for the task,
two wake-ups through futures, a read timer per wait and six levels of coroutines resumed on
each wake (``bench/miss_micro.py --profile``: about 15% of a 1 KiB miss). Here the flight is
fed from the lean client's ``LeanCall`` listener, called once per read of the upstream
connection: the head makes ``engine.FillSteps`` (the same storability, sink and flight head
as ``CacheEngine._receive``), each read's bytes are a piece, the end stores the response and
finishes the flight, and ``ended`` is called, all within the loop's callback for that read.

It is used only where nothing in it would have to wait (``fill_now``): a GET that fills the
cache and may be collapsed, no flight for the key running, no disk tier (whose writes are
awaited), an upstream that can send the request at once (``Upstream.call_now``; over HTTP a free
slot and an idle kept-alive connection). Otherwise ``fill_now`` starts nothing and the
caller runs the flight as before. If the reused connection turns out to have been closed by
the upstream before any byte of the answer came (what ``LeanExchange`` sends again on a new
connection), the flight goes on in a task of its own (``Collapser.run_in_task``), which
connects anew; ``ended`` is called when that ends.

Everything else is the flight's business as usual: others join it (``Collapser.join``), its
listener writes the owner's answer (``hit_path``), an error before the head fails it (the
readers get the error), one after the head cuts the body.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from httpcache import purge_watermark
from httpcache.collapse import Flight
from httpcache.engine import CacheEngine, FillSteps
from httpcache.errors import UpstreamDisconnected
from httpcache.lean_client import LeanCall
from httpcache.messages import CacheRequest
from httpcache.policy import Miss
from httpcache.store import FetchMark
from httpcache.upstream import lean_fields

log = logging.getLogger("cdn.httpcache.callback_fill")


def fill_now(engine: CacheEngine, creq: CacheRequest, decision: Miss, remote: str | None,
             ended: Callable[[], None]) -> Flight | None:
    """Start the flight that fills the cache for ``creq`` driven by callbacks (see the
    module docstring) and return it; ``ended`` is called once it has finished or failed.
    ``None``: nothing was started (the flight must be run as usual)."""
    if (creq.method != "GET" or not decision.store or not decision.collapse
            or engine.disk is not None or engine.collapser.busy(creq.target)):
        return None
    fill = CallbackFill(engine, creq, decision, remote, ended)
    call = engine.upstream.call_now(creq.target, engine.fill_fields(creq, decision, remote),
                                    fill.changed, cache_key=creq.target)
    if call is None:
        return None
    flight = engine.collapser.start(creq.target)
    assert flight is not None  # not busy, checked above, and nothing ran since
    fill.call = call
    fill.flight = flight
    return flight


class CallbackFill:
    """One flight fed from a ``LeanCall``'s listener (see the module docstring)."""

    __slots__ = ("call", "creq", "decision", "ended", "engine", "flight", "remote",
                 "request_time", "since", "steps")

    def __init__(self, engine: CacheEngine, creq: CacheRequest, decision: Miss,
                 remote: str | None, ended: Callable[[], None]) -> None:
        self.engine = engine
        self.creq = creq
        self.decision = decision
        self.remote = remote
        self.ended: Callable[[], None] | None = ended
        self.since: FetchMark = engine.store.fetch_mark()
        self.request_time = engine.clock()
        self.call: LeanCall | None = None
        self.flight: Flight | None = None
        self.steps: FillSteps | None = None

    def changed(self) -> None:
        """The upstream's answer moved on (``LeanCall``'s listener)."""
        try:
            self._step()
        except Exception as exc:  # a fault of ours: end the flight, never leave it hanging
            log.exception("%s: filling the cache failed", self.creq.target)
            self._end(exc)

    def _step(self) -> None:
        call = self.call
        if call is None:  # ended already
            return
        conn = call.conn
        steps = self.steps
        engine = self.engine
        if steps is None:
            if not conn.head_done:
                error = conn.error
                if error is None:
                    return
                if isinstance(error, UpstreamDisconnected) and not conn.received:
                    # closed by the upstream while idle: connect anew, in a task
                    self._run_in_task()
                    return
                engine._upstream_counter("GET", "error").inc()
                self._end(error)
                return
            engine._upstream_counter("GET", conn.status).inc()
            flight = self.flight
            assert flight is not None
            flight.method = "GET"
            fields = lean_fields(conn)
            reflects = fields.first(purge_watermark.LOWER)
            if reflects is not None:  # only after a purge: kept off the common miss
                self.since = self.since.reflecting(purge_watermark.parse(reflects))
            steps = self.steps = FillSteps(
                engine, flight, self.creq, "GET", conn.status, fields,
                self.request_time, engine.clock(), fills=True, applied=self.since.applied)
            sink = steps.sink
            if sink is not None and sink.keeping:
                call.keep_whole()  # one buffer, no join (lean_client)
            steps.publish()
        sink = steps.sink
        while (piece := conn.next_piece()) is not None:
            steps.piece(piece)
            if sink is not None:
                sink.add_in_memory(piece)
        if conn.complete:
            whole = call.whole()  # before the connection can serve another exchange
            self._finish_call()
            stored = steps.end(whole)
            if stored is not None:
                engine.keep_in_memory(stored, self.since)
            self._end(None)
        elif conn.error is not None:
            if sink is not None:
                sink.drop()
            self._end(conn.error)

    def _finish_call(self) -> None:
        call, self.call = self.call, None
        if call is not None:
            call.finish()

    def _end(self, error: BaseException | None) -> None:
        """As ``Collapser.run`` ends a flight: finished or failed, closed to newcomers."""
        self._finish_call()
        flight = self.flight
        assert flight is not None
        if error is None:
            flight.finish()
        else:
            flight.fail(error)
        self.engine.collapser.close_to_newcomers(flight)
        ended, self.ended = self.ended, None
        if ended is not None:
            ended()

    def _run_in_task(self) -> None:
        self._finish_call()
        flight, ended = self.flight, self.ended
        assert flight is not None and ended is not None
        self.ended = None
        engine = self.engine
        engine.collapser.run_in_task(
            flight, engine._producer(self.creq, self.decision, self.remote), ended)
