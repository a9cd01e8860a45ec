"""Errors of the origin, each carrying the HTTP status and S3 error code it maps to.

Two branches: ``ClientError`` (4xx: the request is wrong or not allowed) and ``ServerError``
(5xx: we or the storage behind us failed). Foreign exceptions (asyncpg, aiohttp, pyeclib) are
wrapped into these at the package edge, so the API middleware renders every failure as one
S3 ``<Error>`` document and nothing else leaks out.
"""

from __future__ import annotations


class OriginError(Exception):
    """Base: ``status`` and ``code`` are the HTTP status and the S3 ``<Code>``."""

    status = 500
    code = "InternalError"
    default_message = "We encountered an internal error. Please try again."

    def __init__(self, message: str | None = None, *, resource: str | None = None) -> None:
        self.message = message or self.default_message
        self.resource = resource
        super().__init__(self.message)


class ClientError(OriginError):
    status = 400
    code = "InvalidRequest"
    default_message = "The request is invalid."


class ServerError(OriginError):
    status = 500


# -- 4xx --------------------------------------------------------------------------------------

class InvalidArgument(ClientError):
    code = "InvalidArgument"
    default_message = "Invalid argument."


class InvalidBucketName(ClientError):
    code = "InvalidBucketName"
    default_message = "The specified bucket is not valid."


class KeyTooLongError(ClientError):
    code = "KeyTooLongError"
    default_message = "Your key is too long."


class EntityTooLarge(ClientError):
    code = "EntityTooLarge"
    default_message = "Your proposed upload exceeds the maximum allowed object size."


class BadDigest(ClientError):
    code = "BadDigest"
    default_message = "The Content-MD5 you specified did not match what we received."


class InvalidDigest(ClientError):
    code = "InvalidDigest"
    default_message = "The Content-MD5 you specified is not valid."


class IncompleteBody(ClientError):
    code = "IncompleteBody"
    default_message = "You did not provide the number of bytes specified by the " \
                      "Content-Length HTTP header."


class ContentSHA256Mismatch(ClientError):
    code = "XAmzContentSHA256Mismatch"
    default_message = "The provided 'x-amz-content-sha256' header does not match what was " \
                      "computed."


class AuthorizationHeaderMalformed(ClientError):
    code = "AuthorizationHeaderMalformed"
    default_message = "The authorization header is malformed."


class RequestTimeout(ClientError):
    code = "RequestTimeout"
    default_message = "Your socket connection to the server was not read from or written to " \
                      "within the timeout period."


class InvalidStorageClass(ClientError):
    code = "InvalidStorageClass"
    default_message = "The storage class you specified is not valid."


class AccessDenied(ClientError):
    status = 403
    code = "AccessDenied"
    default_message = "Access Denied"


class SignatureDoesNotMatch(ClientError):
    status = 403
    code = "SignatureDoesNotMatch"
    default_message = ("The request signature we calculated does not match the signature you "
                       "provided. Check your key and signing method.")


class InvalidAccessKeyId(ClientError):
    status = 403
    code = "InvalidAccessKeyId"
    default_message = "The AWS Access Key Id you provided does not exist in our records."


class RequestTimeTooSkewed(ClientError):
    status = 403
    code = "RequestTimeTooSkewed"
    default_message = "The difference between the request time and the current time is too " \
                      "large."


class NoSuchBucket(ClientError):
    status = 404
    code = "NoSuchBucket"
    default_message = "The specified bucket does not exist."


class NoSuchKey(ClientError):
    status = 404
    code = "NoSuchKey"
    default_message = "The specified key does not exist."


class MethodNotAllowed(ClientError):
    status = 405
    code = "MethodNotAllowed"
    default_message = "The specified method is not allowed against this resource."


class BucketAlreadyExists(ClientError):
    status = 409
    code = "BucketAlreadyExists"
    default_message = "The requested bucket name is not available."


class BucketNotEmpty(ClientError):
    status = 409
    code = "BucketNotEmpty"
    default_message = "The bucket you tried to delete is not empty."


class PreconditionFailed(ClientError):
    status = 412
    code = "PreconditionFailed"
    default_message = "At least one of the preconditions you specified did not hold."


class InvalidRange(ClientError):
    status = 416
    code = "InvalidRange"
    default_message = "The requested range is not satisfiable."

    def __init__(self, message: str | None = None, *, resource: str | None = None,
                 object_size: int = 0) -> None:
        super().__init__(message, resource=resource)
        self.object_size = object_size


# -- 4xx of S3 features (multipart, versioning, tagging, lifecycle) ---------------------------

class MalformedXML(ClientError):
    code = "MalformedXML"
    default_message = "The XML you provided was not well-formed or did not validate against " \
                      "our published schema."


class InvalidPart(ClientError):
    code = "InvalidPart"
    default_message = "One or more of the specified parts could not be found. The part may " \
                      "not have been uploaded, or the specified entity tag may not match the " \
                      "part's entity tag."


class InvalidPartOrder(ClientError):
    code = "InvalidPartOrder"
    default_message = "The list of parts was not in ascending order. Parts must be ordered " \
                      "by part number."


class EntityTooSmall(ClientError):
    code = "EntityTooSmall"
    default_message = "Your proposed upload is smaller than the minimum allowed object size."


class InvalidTag(ClientError):
    code = "InvalidTag"
    default_message = "The tag provided was not a valid tag."


class NoSuchUpload(ClientError):
    status = 404
    code = "NoSuchUpload"
    default_message = "The specified multipart upload does not exist. The upload ID might be " \
                      "invalid, or the multipart upload might have been aborted or completed."


class NoSuchVersion(ClientError):
    status = 404
    code = "NoSuchVersion"
    default_message = "The specified version does not exist."


class NoSuchLifecycleConfiguration(ClientError):
    status = 404
    code = "NoSuchLifecycleConfiguration"
    default_message = "The lifecycle configuration does not exist."


class BucketAlreadyOwnedByYou(ClientError):
    status = 409
    code = "BucketAlreadyOwnedByYou"
    default_message = "The bucket you tried to create already exists, and you own it."


# -- 5xx --------------------------------------------------------------------------------------

class InternalError(ServerError):
    code = "InternalError"


class NotImplementedYet(ServerError):
    status = 501
    code = "NotImplemented"
    default_message = "A header or query you provided implies functionality that is not " \
                      "implemented."


class ServiceUnavailable(ServerError):
    status = 503
    code = "ServiceUnavailable"
    default_message = "Please reduce your request rate."


class InsufficientNodes(ServiceUnavailable):
    """Fewer healthy storage nodes (or durable fragments) than the write quorum."""

    default_message = "Not enough storage nodes are available to store the object."


class InsufficientFragments(ServiceUnavailable):
    """Fewer than ``ndata`` fragments of a segment could be read back intact."""

    default_message = "Not enough storage nodes are available to read the object."


class MetadataUnavailable(ServiceUnavailable):
    default_message = "The metadata store is unavailable."
