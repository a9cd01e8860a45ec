"""Path-style S3 addressing: ``/{bucket}`` and ``/{bucket}/{key}`` (pure).

The key is taken from the raw request path and percent-decoded once here, rather than from the
router, so keys such as ``a/../b`` or ``x//y`` survive exactly as the client wrote them (URL
normalisation must not merge two S3 keys), and signing sees the same path.
"""

from __future__ import annotations

from urllib.parse import unquote


def split_path(raw_path: str) -> tuple[str, str | None]:
    """``("bucket", "key")``, ``("bucket", None)`` for bucket URLs, ``("", None)`` for ``/``."""
    path = raw_path.split("?", 1)[0]
    trimmed = path[1:] if path.startswith("/") else path
    bucket, sep, key = trimmed.partition("/")
    bucket = unquote(bucket)
    if not sep or not key:
        return bucket, None
    return bucket, unquote(key)


def resource(bucket: str, key: str | None = None) -> str:
    """The ``<Resource>`` of an error document."""
    if not bucket:
        return "/"
    return f"/{bucket}/{key}" if key is not None else f"/{bucket}"
