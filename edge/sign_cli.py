"""``cdn sign URL --key-id K --secret S [--expires-in 3600] [--client-ip IP] [--prefix P]``.

Prints the signed URL. The secret may come from ``CDN_SIGNING_SECRET`` instead of the
command line (which would leave it in shell history and ``ps``).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence

from edge.signing import sign_url


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="cdn sign", description="print a signed edge URL")
    parser.add_argument("url", help="URL or path, e.g. http://127.0.0.1:8001/private/a.txt")
    parser.add_argument("--key-id", required=True, help="key id (kid) the edge knows")
    parser.add_argument("--secret", default=os.environ.get("CDN_SIGNING_SECRET"),
                        help="signing secret (default: $CDN_SIGNING_SECRET)")
    parser.add_argument("--expires-in", type=int, default=3600, help="seconds (default 3600)")
    parser.add_argument("--client-ip", help="bind the URL to this client address")
    parser.add_argument("--prefix", help="sign this path prefix instead of the exact path")
    args = parser.parse_args(list(argv))
    if not args.secret:
        print("cdn sign: no secret (use --secret or CDN_SIGNING_SECRET)", file=sys.stderr)
        return 2
    if args.expires_in <= 0:
        print(f"cdn sign: --expires-in must be positive, got {args.expires_in}",
              file=sys.stderr)
        return 2
    try:
        signed = sign_url(args.url, key_id=args.key_id, secret=args.secret,
                          expires_at=int(time.time()) + args.expires_in,
                          client_ip=args.client_ip, path_prefix=args.prefix)
    except ValueError as exc:
        print(f"cdn sign: {exc}", file=sys.stderr)
        return 2
    print(signed)
    return 0
