"""Load one frozen dataclass per role from defaults, a TOML file, env vars and CLI overrides.

Precedence, lowest first: the dataclass defaults, the role's table in the TOML file named by
``CDN_CONFIG`` (or passed explicitly), environment variables ``{prefix}{FIELD}``, then explicit
overrides (CLI flags). Values are converted by the field's annotation so a typo in a port number
fails at start-up with the offending value in the message, not deep inside a worker.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``tuple[str, ...]`` (comma
separated in env) and ``dict[str, str]`` (``a=1,b=2`` in env).
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


class ConfigError(ValueError):
    """A configuration value is missing or cannot be converted to its declared type."""


def _convert(name: str, annotation: Any, raw: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):  # ``X | None``: convert to X
        (annotation, *_rest) = [a for a in typing.get_args(annotation) if a is not type(None)]
        origin = typing.get_origin(annotation)
    if annotation is bool:
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise ConfigError(f"{name}: expected a boolean, got {raw!r}")
    if annotation in (int, float):
        try:
            return annotation(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected {annotation.__name__}, got {raw!r}") from None
    if annotation is str:
        return str(raw)
    if origin is tuple:
        if isinstance(raw, str):
            items = [p.strip() for p in raw.split(",") if p.strip()]
        else:
            items = list(raw)
        (item_type, *_rest) = typing.get_args(annotation) or (str,)
        return tuple(_convert(name, item_type, i) for i in items)
    if origin is dict:
        if isinstance(raw, str):
            pairs: dict[str, str] = {}
            for part in (p.strip() for p in raw.split(",")):
                if not part:
                    continue
                key, sep, value = part.partition("=")
                if not sep:
                    raise ConfigError(f"{name}: expected key=value pairs, got {part!r}")
                pairs[key.strip()] = value.strip()
            return pairs
        if isinstance(raw, Mapping):
            return {str(k): str(v) for k, v in raw.items()}
        raise ConfigError(f"{name}: expected a mapping, got {raw!r}")
    if annotation is Path:
        return Path(raw)
    raise ConfigError(f"{name}: unsupported config type {annotation!r}")


def load_config(
    cls: type[T],
    *,
    prefix: str,
    section: str,
    toml_path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` (a dataclass) from defaults < TOML ``[section]`` < env < overrides.

    ``overrides`` entries whose value is ``None`` are ignored, so an argparse namespace with
    unset flags can be passed straight through.
    """
    env = os.environ if env is None else env
    if toml_path is None and env.get("CDN_CONFIG"):
        toml_path = env["CDN_CONFIG"]
    from_file: dict[str, Any] = {}
    if toml_path:
        with open(toml_path, "rb") as fh:
            from_file = dict(tomllib.load(fh).get(section, {}))

    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = set(from_file) - known
    if unknown:
        raise ConfigError(f"[{section}] in {toml_path}: unknown keys {sorted(unknown)}")
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.name
        raw: Any = dataclasses.MISSING
        if name in from_file:
            raw = from_file[name]
        env_name = f"{prefix}{name.upper()}"
        if env_name in env:
            raw = env[env_name]
        if overrides and overrides.get(name) is not None:
            raw = overrides[name]
        if raw is dataclasses.MISSING:
            continue
        values[name] = _convert(f"{section}.{name} ({env_name})", hints[name], raw)
    try:
        return cls(**values)
    except TypeError as exc:
        raise ConfigError(f"[{section}]: {exc}") from None
