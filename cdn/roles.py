"""Run one role (edge, shield, origin, storage-node, control) from the command line.

Every role is described the same way: a frozen config dataclass and a ``build_app(config)``
coroutine-free factory returning an ``aiohttp.web.Application``. Command-line flags are derived
from the dataclass fields (``--field-name``), so a role's knobs are declared once, in its config.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import dataclasses
import gc
import logging
import os
import signal
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from aiohttp import web

from cdn.settings import ConfigError, load_config

T = TypeVar("T")

log = logging.getLogger("cdn")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One ``--flag`` per dataclass field; unset flags stay ``None`` so defaults/env win."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        default = field.default if field.default is not dataclasses.MISSING else None
        help_text = f"{field.metadata.get('help', '')} (default: {default!r})".strip()
        if hint is bool:
            parser.add_argument(flag, dest=field.name, default=None,
                                action=argparse.BooleanOptionalAction, help=help_text)
        else:
            parser.add_argument(flag, dest=field.name, default=None, help=help_text)


def config_from_args(
    cls: type[T], args: argparse.Namespace, *, prefix: str, section: str
) -> T:
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]  # T is always a dataclass
    overrides = {f.name: getattr(args, f.name, None) for f in fields}
    return load_config(cls, prefix=prefix, section=section,
                       toml_path=getattr(args, "config", None), overrides=overrides)


def tune_malloc() -> None:
    """Pin glibc's malloc thresholds so large buffers are reused, not mmap'd and unmapped.

    glibc starts with a 128 KiB mmap threshold that it raises only after large frees, so a
    fresh process maps and unmaps every ~175 KiB erasure-code fragment and 1 MiB segment:
    pyeclib encoded at ~610 MB/s in a new process against ~13–14 GB/s with the thresholds
    fixed (1 MiB segments, 6+3, measured on this machine). No-op off glibc.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 64 << 20)  # M_MMAP_THRESHOLD: serve ≤ 64 MiB from the heap
        libc.mallopt(-1, 128 << 20)  # M_TRIM_THRESHOLD: keep freed memory for reuse
    except (OSError, AttributeError):
        pass


def tune_gc() -> None:
    """Make the cyclic garbage collector cheap for a long-running server.

    Everything allocated while starting up (modules, config, app, routes) lives for the whole
    process, so it is moved to the permanent generation and never scanned again; and the
    gen-0 threshold is raised because request handling allocates many short-lived objects
    that reference counting frees anyway. Measured on a proxy like ours, the default collector
    took about a fifth of CPU and paused for up to ~100 ms under load.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


def serve_forked(count: int, serve_one: Callable[[int], None], *, what: str,
                 after_fork: Callable[[], None] | None = None) -> int:
    """Run ``count`` servers as forked processes, made before any event loop exists:
    ``serve_one(index)`` runs server ``index`` (0-based) until it is told to stop, binding
    its port with ``SO_REUSEPORT`` so the kernel spreads connections over them. The parent
    only supervises: it forwards SIGTERM/SIGINT and returns the first non-zero exit status
    once every server has exited. Each server gets SIGTERM if the parent dies (Linux).
    ``what`` names a server in the log ("worker", "origin process"). ``after_fork`` runs in
    the parent once every server is forked (to close what only the servers use)."""
    children: list[int] = []
    for index in range(count):
        pid = os.fork()
        if pid == 0:  # a server
            _die_with_parent()
            code = 0
            try:
                serve_one(index)
            except BaseException:  # noqa: BLE001 - reported, then this process exits
                log.exception("%s %d failed", what, index + 1)
                code = 1
            os._exit(code)
        children.append(pid)
    if after_fork is not None:
        after_fork()

    def forward(sig: int, _frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, sig)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    status = 0
    for child in children:
        _pid, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    return status


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Front(typing.Protocol):
    """A protocol factory put in front of an aiohttp application (it hands connections it
    does not serve itself to the protocol ``app_server`` makes)."""

    def __call__(self) -> asyncio.Protocol: ...

    def close_connections(self) -> None: ...


# (the application, after start-up; the factory of aiohttp's own protocol) -> the front
FrontFactory = Callable[[web.Application, Callable[[], asyncio.Protocol]], Front]


def serve(app: web.Application, host: str, port: int, *, reuse_port: bool = False,
          front: FrontFactory | None = None, label: str = "") -> None:
    """Run ``app`` on uvloop until SIGINT/SIGTERM, then shut down cleanly. With ``front``,
    the listening socket's connections start with the protocol it makes (built once the
    application has started, so it can use what the cleanup contexts set up): the storage
    node's batch front, the edge's and shield's hit path (``httpcache.serving``). ``label``
    follows the address in the ``ready`` line (which worker)."""
    tune_malloc()
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - non-posix
        pass

    async def main() -> None:
        runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await runner.setup()
        server: asyncio.Server | None = None
        made: Front | None = None
        if front is None:
            site = web.TCPSite(runner, host, port, reuse_port=reuse_port, backlog=1024)
            await site.start()
        else:
            assert runner.server is not None
            made = front(app, runner.server)
            server = await asyncio.get_running_loop().create_server(
                made, host, port, reuse_port=reuse_port, backlog=1024)
        tune_gc()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        log.info("listening on http://%s:%d%s", host, port, label)
        print(f"ready http://{host}:{port}{label}", flush=True)
        await stop.wait()
        if server is not None and made is not None:
            server.close()
            made.close_connections()
        await runner.cleanup()

    asyncio.run(main())


def run_role(
    argv: Sequence[str],
    *,
    prog: str,
    cls: type[T],
    prefix: str,
    section: str,
    build_app: Callable[[T], web.Application],
    host_port: Callable[[T], tuple[str, int]],
    serve_app: Callable[[T, web.Application], int] | None = None,
) -> int:
    """Parse flags into ``cls``, build the app and serve it (``serve_app`` when the role
    serves differently, e.g. edge and shield with their fast front end and workers)."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--config", help="TOML file (default: $CDN_CONFIG)")
    parser.add_argument("--log-level", default="INFO")
    add_config_arguments(parser, cls)
    args = parser.parse_args(list(argv))
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s {prog} %(levelname)s %(name)s: %(message)s")
    try:
        config = config_from_args(cls, args, prefix=prefix, section=section)
    except ConfigError as exc:
        print(f"{prog}: configuration error: {exc}", file=sys.stderr)
        return 2
    app = build_app(config)
    if serve_app is not None:
        return serve_app(config, app)
    host, port = host_port(config)
    serve(app, host, port)
    return 0


def as_dict(config: Any) -> dict[str, Any]:
    return dataclasses.asdict(config)
