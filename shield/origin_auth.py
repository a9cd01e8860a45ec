"""The shield signs its requests to our origin with AWS SigV4, so private buckets can be read
through the CDN with the shield's own key while clients never see a credential.

Pure apart from the clock, which is passed in. Public buckets need no key; with no key
configured the shield sends requests unsigned (any HTTP origin, or public buckets only).
"""

from __future__ import annotations

import time
import urllib.parse
from collections.abc import Callable
from datetime import UTC, datetime

from yarl import URL

from httpcache.upstream import RequestSigner
from origin import sigv4


def host_header(base_url: str) -> str:
    """The Host header aiohttp will send for ``base_url`` (the port only when not default)."""
    url = URL(base_url)
    host = url.raw_host or ""
    if url.explicit_port:
        return f"{host}:{url.port}"
    return host


def sigv4_signer(
    base_url: str,
    access_key: str,
    secret_key: str,
    region: str,
    *,
    clock: Callable[[], float] = time.time,
) -> RequestSigner:
    """A ``RequestSigner`` adding SigV4 headers for ``(method, target)``.

    ``target`` is the path and query exactly as sent upstream (percent-encoded); SigV4 wants
    them decoded, and re-encodes them canonically itself. The payload is not hashed
    (``UNSIGNED-PAYLOAD``): request bodies are streamed through, never buffered.
    """
    host = host_header(base_url)

    def sign(method: str, target: str) -> dict[str, str]:
        raw_path, _, raw_query = target.partition("?")
        amz_date = datetime.fromtimestamp(clock(), UTC).strftime("%Y%m%dT%H%M%SZ")
        return sigv4.sign_request(
            method=method,
            path=urllib.parse.unquote(raw_path),
            query=urllib.parse.parse_qsl(raw_query, keep_blank_values=True),
            headers={"host": host},
            access_key=access_key,
            secret_key=secret_key,
            region=region,
            amz_date=amz_date,
            payload_hash=sigv4.UNSIGNED_PAYLOAD,
        )

    return sign
