"""``cdn purge``: purge by tag, URL or prefix through the control plane.

The control URL and token come from flags, else ``CDN_CONTROL_URL`` / ``CDN_PURGE_TOKEN``,
else the ``topology.json`` that ``cdn up`` wrote in ``--data-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def _defaults(data_dir: str) -> tuple[str, str]:
    url = os.environ.get("CDN_CONTROL_URL", "")
    token = os.environ.get("CDN_PURGE_TOKEN", "")
    topo = Path(data_dir) / "topology.json"
    if (not url or not token) and topo.exists():
        control = json.loads(topo.read_text())["control"]
        url = url or control["url"]
        token = token or control["purge_token"]
    return url, token


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="cdn purge", description=__doc__.splitlines()[0])
    parser.add_argument("--tag", action="append", default=[], help="surrogate key (repeatable)")
    parser.add_argument("--url", action="append", default=[], help="path or URL (repeatable)")
    parser.add_argument("--prefix", action="append", default=[], help="path prefix (repeatable)")
    parser.add_argument("--soft", action="store_true", help="mark stale instead of evicting")
    parser.add_argument("--control-url", default=None)
    parser.add_argument("--token", default=None)
    parser.add_argument("--data-dir", default=".cdn-data")
    args = parser.parse_args(argv)
    url, token = _defaults(args.data_dir)
    url, token = args.control_url or url, args.token or token
    if not url or not token:
        print("cdn purge: no control URL/token (flags, env or a running `cdn up`)",
              file=sys.stderr)
        return 2
    body = json.dumps({"tags": args.tag, "urls": args.url, "prefixes": args.prefix,
                       "soft": args.soft}).encode()
    request = urllib.request.Request(
        url.rstrip("/") + "/purge", data=body, method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            print(resp.read().decode())
            return 0
    except urllib.error.HTTPError as exc:
        print(f"cdn purge: {exc.code} {exc.read().decode(errors='replace')}", file=sys.stderr)
        return 1
    except urllib.error.URLError as exc:
        print(f"cdn purge: cannot reach {url}: {exc.reason}", file=sys.stderr)
        return 1
