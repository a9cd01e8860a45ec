"""An immutable, ordered, case-insensitive list of header fields (pure).

The policy and the store work on this type rather than on aiohttp's ``CIMultiDict`` so the
RFC rules stay free of I/O libraries and a stored response can never be changed by a handler
that holds a reference to it (RFC 9111 updates produce a *new* list; see ``policy``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping

# RFC 9110 §7.6.1: "a proxy or gateway MUST remove any received connection options" and the
# fields below are defined as connection-specific; they are never forwarded nor stored.
HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-connection", "te", "transfer-encoding", "upgrade",
    "proxy-authenticate", "proxy-authorization", "trailer",
})


class Fields:
    """Ordered header fields; names compare case-insensitively, order and duplicates kept."""

    __slots__ = ("_index", "_items", "memo")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: tuple[tuple[str, str], ...] = tuple((str(k), str(v)) for k, v in items)
        self._index: dict[str, list[str]] | None = None
        # what a pure function derived from these (immutable) fields, kept by that function
        # (``cache_control.response_directives``: parsed 3-4 times per miss otherwise)
        self.memo: object = None

    @classmethod
    def of_str_pairs(cls, items: tuple[tuple[str, str], ...]) -> Fields:
        """Fields over pairs known to be ``(str, str)`` already (copies of our own)."""
        fields = object.__new__(cls)
        fields._items = items
        fields._index = None
        fields.memo = None
        return fields

    @classmethod
    def indexed(cls, items: Iterable[tuple[str, str]]) -> Fields:
        """Fields with a name index built up front: lookups cost one dict access instead of
        a scan. For request fields, looked up many times and soon dropped (the store keeps
        plain ``Fields``: an index per stored response would cost memory)."""
        fields = cls(items)
        index: dict[str, list[str]] = {}
        for k, v in fields._items:
            lname = k.lower()
            found = index.get(lname)
            if found is None:
                index[lname] = [v]
            else:
                found.append(v)
        fields._index = index
        return fields

    @classmethod
    def prebuilt(cls, items: tuple[tuple[str, str], ...], index: dict[str, list[str]]
                 ) -> Fields:
        """``indexed(items)`` when the caller built ``index`` (lower-case name → values in
        order) while reading the fields: a protocol's parser callbacks do."""
        fields = object.__new__(cls)
        fields._items = items
        fields._index = index
        fields.memo = None
        return fields

    @classmethod
    def of(cls, mapping: Mapping[str, str] | Iterable[tuple[str, str]]) -> Fields:
        if isinstance(mapping, Mapping):
            return cls(mapping.items())
        return cls(mapping)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Fields) and self._items == other._items

    def __hash__(self) -> int:
        return hash(self._items)

    def __repr__(self) -> str:
        return f"Fields({list(self._items)!r})"

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def get_all(self, name: str) -> list[str]:
        lname = name.lower()
        if self._index is not None:
            return list(self._index.get(lname, ()))
        return [v for k, v in self._items if k.lower() == lname]

    def get(self, name: str, default: str | None = None) -> str | None:
        """All field lines of ``name`` joined by ", " (RFC 9110 §5.3), or ``default``."""
        if self._index is not None:
            found = self._index.get(name.lower())
            if not found:
                return default
            return found[0] if len(found) == 1 else ", ".join(found)
        values = self.get_all(name)
        return ", ".join(values) if values else default

    def first(self, name: str) -> str | None:
        """The first field line only: for singleton fields such as Date or ETag."""
        lname = name.lower()
        if self._index is not None:
            found = self._index.get(lname)
            return found[0] if found else None
        for k, v in self._items:
            if k.lower() == lname:
                return v
        return None

    def names(self) -> set[str]:
        if self._index is not None:
            return set(self._index)
        return {k.lower() for k, _ in self._items}

    def has_any(self, names: frozenset[str] | set[str]) -> bool:
        """Whether a field of one of ``names`` (lower-case) is present."""
        if self._index is not None:
            return not names.isdisjoint(self._index)
        return any(k.lower() in names for k, _ in self._items)

    def without(self, *names: str | Iterable[str]) -> Fields:
        drop: set[str] = set()
        for n in names:
            if isinstance(n, str):
                drop.add(n.lower())
            else:
                drop.update(_lowered(n))
        index = self._index
        if index is None:
            return Fields.of_str_pairs(
                tuple([item for item in self._items if item[0].lower() not in drop]))
        # indexed (request and upstream fields): no scan when nothing goes, which is the
        # common case, and the result stays indexed for the lookups that follow
        if drop.isdisjoint(index):
            return self
        fields = Fields.of_str_pairs(
            tuple([item for item in self._items if item[0].lower() not in drop]))
        fields._index = {k: v for k, v in index.items() if k not in drop}
        return fields

    def with_field(self, name: str, value: str) -> Fields:
        """A copy with every ``name`` line replaced by one line ``name: value``."""
        name, value = str(name), str(value)
        return self.replaced(frozenset((name.lower(),)), ((name, value),))

    def replaced(self, remove: frozenset[str], add: Iterable[tuple[str, str]]) -> Fields:
        """A copy without the lines named in ``remove`` (lower-case names), with the
        ``(str, str)`` lines ``add`` appended: ``without`` and ``with_field``/``appended``
        in one pass (the forwarding rules make one such change per message)."""
        add = tuple(add)
        index = self._index
        if index is not None and remove.isdisjoint(index):
            fields = Fields.of_str_pairs(self._items + add)
            new = dict(index)
        else:
            fields = Fields.of_str_pairs(tuple(
                [item for item in self._items if item[0].lower() not in remove]) + add)
            if index is None:
                return fields
            new = {k: v for k, v in index.items() if k not in remove}
        for name, value in add:
            lname = name.lower()
            # the value lists are shared with ``self``'s index: extend a copy
            new[lname] = [*new.get(lname, ()), value]
        fields._index = new
        return fields

    def appended(self, name: str, value: str) -> Fields:
        name, value = str(name), str(value)
        fields = Fields.of_str_pairs((*self._items, (name, value)))
        if self._index is not None:
            lname = name.lower()
            fields._index = {**self._index, lname: [*self._index.get(lname, ()), value]}
        return fields

    def unindexed(self) -> Fields:
        """The same fields without the name index (what a store keeps: less memory)."""
        return self if self._index is None else Fields.of_str_pairs(self._items)

    def byte_size(self) -> int:
        return sum(len(k) + len(v) + 4 for k, v in self._items)


_LOWERED: dict[frozenset[str], frozenset[str]] = {}


def _lowered(names: Iterable[str]) -> Iterable[str]:
    """``names`` in lower case; the module constants passed as frozensets are lowered once."""
    if not isinstance(names, frozenset):
        return [n.lower() for n in names]
    found = _LOWERED.get(names)
    if found is None:
        if len(_LOWERED) > 1024:  # only constants and config sets are expected: stay bounded
            _LOWERED.clear()
        found = _LOWERED[names] = frozenset(n.lower() for n in names)
    return found


def split_list(value: str | None) -> list[str]:
    """Members of a comma-separated list field (RFC 9110 §5.6.1), trimmed, empties dropped."""
    if not value:
        return []
    return [p.strip() for p in value.split(",") if p.strip()]


def connection_options(fields: Fields) -> set[str]:
    """Field names listed in ``Connection`` (RFC 9110 §7.6.1), which are hop-by-hop too."""
    value = fields.get("connection")
    return {n.lower() for n in split_list(value)} if value else set()


def end_to_end(fields: Fields) -> Fields:
    """``fields`` without hop-by-hop fields.

    RFC 9110 §7.6.1: "Intermediaries MUST parse a received Connection header field before a
    message is forwarded and, for each connection-option in this field, remove any header or
    trailer field(s) from the message with the same name as the connection-option, and then
    remove the Connection header field itself".

    ``fields`` itself when it has none (the common case: no copy).
    """
    index = fields._index
    if index is not None and "connection" not in index and HOP_BY_HOP.isdisjoint(index):
        return fields
    options = connection_options(fields)
    drop = HOP_BY_HOP | options if options else HOP_BY_HOP
    if not fields.has_any(drop):
        return fields
    return fields.without(drop)
