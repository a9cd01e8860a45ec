"""Errors of the control plane, each carrying the HTTP status it maps to."""

from __future__ import annotations


class ControlError(Exception):
    status = 500
    code = "InternalError"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(ControlError):
    status = 401
    code = "Unauthorized"


class BadPurgeRequest(ControlError):
    status = 400
    code = "BadRequest"


class PurgeLogUnavailable(ControlError):
    status = 503
    code = "ServiceUnavailable"
