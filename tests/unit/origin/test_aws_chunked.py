"""aws-chunked decoding, checked against the example in the S3 API reference ("Signature
Calculations for the Authorization Header: Transferring Payload in Multiple Chunks")."""

from __future__ import annotations

import pytest

from origin import sigv4
from origin.aws_chunked import (
    ChunkedDecoder,
    ChunkedFormatError,
    ChunkSignatureError,
    ChunkSigning,
    encode_chunks,
)
from origin.checksums import checksum

SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
SCOPE = sigv4.Scope("20130524", "us-east-1")
DATE = "20130524T000000Z"
HEADERS = [
    ("Host", "s3.amazonaws.com"), ("x-amz-date", DATE), ("x-amz-storage-class",
                                                         "REDUCED_REDUNDANCY"),
    ("x-amz-content-sha256", sigv4.STREAMING_SIGNED), ("Content-Encoding", "aws-chunked"),
    ("x-amz-decoded-content-length", "66560"), ("Content-Length", "66824"),
]
SIGNED = ("content-encoding", "content-length", "host", "x-amz-content-sha256", "x-amz-date",
          "x-amz-decoded-content-length", "x-amz-storage-class")
SEED = "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9"
CHUNK_SIGNATURES = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
                    "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
                    "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
PAYLOAD = b"a" * 66560


def _signing() -> ChunkSigning:
    return ChunkSigning(sigv4.signing_key(SECRET, SCOPE), DATE, SCOPE, SEED)


def test_seed_signature_of_the_documented_example() -> None:
    canonical = sigv4.canonical_request("PUT", "/examplebucket/chunkObject.txt", [], HEADERS,
                                        SIGNED, sigv4.STREAMING_SIGNED)
    assert sigv4.signature(SECRET, SCOPE, sigv4.string_to_sign(DATE, SCOPE, canonical)) == SEED


def test_chunk_signatures_of_the_documented_example() -> None:
    body = encode_chunks([PAYLOAD[:65536], PAYLOAD[65536:]], _signing())
    assert len(body) == 66824
    for signature in CHUNK_SIGNATURES:
        assert f"chunk-signature={signature}".encode() in body


@pytest.mark.parametrize("piece", [1, 7, 1000, 100_000])
def test_decoding_in_any_piece_size_verifies_every_chunk(piece: int) -> None:
    body = encode_chunks([PAYLOAD[:65536], PAYLOAD[65536:]], _signing())
    decoder = ChunkedDecoder(_signing(), trailer=False)
    out = b"".join(decoder.feed(body[i:i + piece]) for i in range(0, len(body), piece))
    assert out == PAYLOAD and decoder.done


def test_a_tampered_chunk_fails_its_signature() -> None:
    body = bytearray(encode_chunks([PAYLOAD[:65536], PAYLOAD[65536:]], _signing()))
    body[200] ^= 1
    decoder = ChunkedDecoder(_signing(), trailer=False)
    with pytest.raises(ChunkSignatureError):
        decoder.feed(bytes(body))


def test_signed_trailer_carries_a_checksum() -> None:
    trailers = {"x-amz-checksum-crc32": checksum("CRC32", PAYLOAD)}
    body = encode_chunks([PAYLOAD], _signing(), trailers)
    decoder = ChunkedDecoder(_signing(), trailer=True)
    assert decoder.feed(body) == PAYLOAD and decoder.done
    assert decoder.trailers == trailers
    tampered = body.replace(trailers["x-amz-checksum-crc32"].encode(), b"AAAAAA==")
    with pytest.raises(ChunkSignatureError):
        ChunkedDecoder(_signing(), trailer=True).feed(tampered)


def test_unsigned_trailer_as_botocore_sends_it() -> None:
    body = b"5\r\nhello\r\n0\r\nx-amz-checksum-crc32:NhCmhg==\r\n\r\n"
    decoder = ChunkedDecoder(None, trailer=True)
    assert decoder.feed(body) == b"hello" and decoder.done
    assert decoder.trailers == {"x-amz-checksum-crc32": "NhCmhg=="}


def test_malformed_bodies() -> None:
    with pytest.raises(ChunkedFormatError):
        ChunkedDecoder(None, trailer=False).feed(b"zz\r\n")
    with pytest.raises(ChunkedFormatError):
        ChunkedDecoder(None, trailer=False).feed(b"2\r\nabc\r\n")
    with pytest.raises(ChunkSignatureError):
        ChunkedDecoder(_signing(), trailer=False).feed(b"2\r\nab\r\n")
    decoder = ChunkedDecoder(None, trailer=False)
    decoder.feed(b"2\r\nab\r\n")
    assert not decoder.done
