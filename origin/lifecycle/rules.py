"""Lifecycle configuration (pure): XML ⇄ rules, and which rule applies to what, when.

Rules are stored as JSON (``buckets.lifecycle``) in the shape ``parse_lifecycle`` returns.
Deviation from S3, on purpose: an action is due ``days × 24 h`` after the object's time, not
at the following midnight UTC (tests advance a clock by whole days either way).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from origin.api.s3xml_in import children, parse_root, text
from origin.errors import InvalidArgument, MalformedXML

NAMESPACE = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_RULES = 1000
Rule = dict[str, Any]


def _days(node: ET.Element | None, name: str) -> int | None:
    if node is None:
        return None
    value = text(node, name)
    if value is None:
        return None
    try:
        days = int(value)
    except ValueError:
        raise MalformedXML(f"{name} {value!r} is not an integer") from None
    if days < 1:
        raise InvalidArgument(f"{name} must be a positive integer")
    return days


def _one(node: ET.Element, name: str) -> ET.Element | None:
    found = children(node, name)
    return found[0] if found else None


def _filter(rule: ET.Element) -> tuple[str, dict[str, str]]:
    legacy = text(rule, "Prefix")
    node = _one(rule, "Filter")
    if node is None:
        return legacy or "", {}
    and_node = _one(node, "And")
    scope = and_node if and_node is not None else node
    tags = {}
    for tag in children(scope, "Tag"):
        key, value = text(tag, "Key"), text(tag, "Value")
        if key is None or value is None:
            raise MalformedXML("a filter <Tag> needs <Key> and <Value>")
        tags[key] = value
    return text(scope, "Prefix") or "", tags


def parse_lifecycle(body: bytes) -> list[Rule]:
    root = parse_root(body, "LifecycleConfiguration")
    rules: list[Rule] = []
    for node in children(root, "Rule"):
        status = text(node, "Status")
        if status not in ("Enabled", "Disabled"):
            raise MalformedXML("a rule's Status is Enabled or Disabled")
        prefix, tags = _filter(node)
        expiration = _one(node, "Expiration")
        noncurrent = _one(node, "NoncurrentVersionExpiration")
        abort = _one(node, "AbortIncompleteMultipartUpload")
        transitions = []
        for transition in children(node, "Transition"):
            storage_class = text(transition, "StorageClass")
            days = _days(transition, "Days")
            if not storage_class or days is None:
                raise MalformedXML("a Transition needs Days and StorageClass")
            transitions.append({"days": days, "storage_class": storage_class})
        rule: Rule = {
            "id": text(node, "ID") or f"rule-{len(rules) + 1}",
            "status": status, "prefix": prefix, "tags": tags,
            "expiration_days": _days(expiration, "Days"),
            "expired_object_delete_marker": expiration is not None and (
                text(expiration, "ExpiredObjectDeleteMarker") or "").lower() == "true",
            "noncurrent_days": _days(noncurrent, "NoncurrentDays"),
            "abort_days": _days(abort, "DaysAfterInitiation"),
            "transitions": transitions,
        }
        if not (rule["expiration_days"] or rule["expired_object_delete_marker"]
                or rule["noncurrent_days"] or rule["abort_days"] or transitions):
            raise MalformedXML(f"rule {rule['id']!r} has no action")
        if rule["abort_days"] and tags:
            raise InvalidArgument("AbortIncompleteMultipartUpload cannot have a tag filter")
        rules.append(rule)
    if not rules or len(rules) > MAX_RULES:
        raise MalformedXML(f"a lifecycle configuration has 1..{MAX_RULES} rules")
    if len({r["id"] for r in rules}) != len(rules):
        raise InvalidArgument("rule IDs must be unique")
    return rules


def _sub(parent: ET.Element, tag: str, value: str | int | None = None) -> ET.Element:
    node = ET.SubElement(parent, tag)
    if value is not None:
        node.text = str(value)
    return node


def lifecycle_document(rules: list[Rule]) -> bytes:
    root = ET.Element("LifecycleConfiguration", xmlns=NAMESPACE)
    for rule in rules:
        node = _sub(root, "Rule")
        _sub(node, "ID", rule["id"])
        scope = _sub(node, "Filter")
        if rule["tags"] and (rule["prefix"] or len(rule["tags"]) > 1):
            scope = _sub(scope, "And")
        if rule["prefix"] or not rule["tags"]:
            _sub(scope, "Prefix", rule["prefix"])
        for key, value in rule["tags"].items():
            tag = _sub(scope, "Tag")
            _sub(tag, "Key", key)
            _sub(tag, "Value", value)
        _sub(node, "Status", rule["status"])
        if rule["expiration_days"] or rule["expired_object_delete_marker"]:
            expiration = _sub(node, "Expiration")
            if rule["expiration_days"]:
                _sub(expiration, "Days", rule["expiration_days"])
            else:
                _sub(expiration, "ExpiredObjectDeleteMarker", "true")
        for transition in rule["transitions"]:
            t = _sub(node, "Transition")
            _sub(t, "Days", transition["days"])
            _sub(t, "StorageClass", transition["storage_class"])
        if rule["noncurrent_days"]:
            _sub(_sub(node, "NoncurrentVersionExpiration"), "NoncurrentDays",
                 rule["noncurrent_days"])
        if rule["abort_days"]:
            _sub(_sub(node, "AbortIncompleteMultipartUpload"), "DaysAfterInitiation",
                 rule["abort_days"])
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="utf-8")


def matches(rule: Rule, key: str, tags: Mapping[str, str]) -> bool:
    """The rule's filter: the key starts with its prefix and the object has all its tags."""
    return (rule["status"] == "Enabled" and key.startswith(rule["prefix"])
            and all(tags.get(k) == v for k, v in rule["tags"].items()))


def due(since: datetime, days: int, now: datetime) -> bool:
    """``days`` whole days have passed since ``since``."""
    return now >= since + timedelta(days=days)


def cutoff(days: int, now: datetime) -> datetime:
    """Objects older than this are due (``due(t, days, now)`` ⇔ ``t <= cutoff``)."""
    return now - timedelta(days=days)
