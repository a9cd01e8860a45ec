"""``cdn``: one entry point for every role and tool.

Roles are imported lazily so ``cdn sign`` does not pay for asyncpg or pyeclib.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

# subcommand -> module exposing ``main(argv: list[str]) -> int``
COMMANDS: dict[str, tuple[str, str]] = {
    "up": ("cdn.up", "start the local topology: PostgreSQL, Redis, nodes, origin, shields, edges"),
    "edge": ("edge.server", "run an edge PoP server"),
    "shield": ("shield.server", "run a shield server"),
    "origin": ("origin.api.server", "run the origin S3-style API"),
    "storage-node": ("origin.storagenode.server", "run a storage node"),
    "control": ("control.server", "run the control plane (purge API)"),
    "sign": ("edge.sign_cli", "print a signed edge URL"),
    "purge": ("control.purge_cli", "purge by tag, URL or prefix through the control plane"),
    "put": ("origin.client_cli", "upload a file to the origin"),
    "get": ("origin.client_cli", "download an object from the origin"),
    "mb": ("origin.client_cli", "create a bucket on the origin"),
    "user": ("origin.user_cli", "create S3 credentials: cdn user create NAME"),
    "repair": ("origin.repair_cli", "rebuild missing/corrupt fragments (also scrub, gc, compact)"),
    "fsck": ("origin.fsck", "count objects by redundancy; non-zero exit if lost or degraded"),
}


def usage() -> str:
    lines = ["usage: cdn COMMAND [options]", "", "commands:"]
    lines += [f"  {name:<13} {help_}" for name, (_mod, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"cdn: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    if COMMANDS[command][0] == "origin.client_cli":
        return int(module.main([command, *rest]))
    return int(module.main(rest))


if __name__ == "__main__":
    sys.exit(main())
