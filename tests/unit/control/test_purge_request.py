import pytest

from control.errors import BadPurgeRequest
from control.purge_request import parse_purge_request


def test_tags_urls_prefixes_are_parsed_and_deduplicated():
    req = parse_purge_request(
        {"tags": ["a", "b", "a"], "urls": ["https://cdn.example/b/k?x=1"], "prefixes": ["/b/"]},
        max_items=10,
    )
    assert req.tags == ("a", "b")
    assert req.urls == ("/b/k?x=1",)
    assert req.prefixes == ("/b/",)
    assert req.soft is False


def test_single_string_is_accepted_as_a_list():
    assert parse_purge_request({"tags": "t"}, max_items=10).tags == ("t",)


@pytest.mark.parametrize(
    "body, message",
    [
        ({}, "nothing to purge"),
        ([], "JSON object"),
        ({"tags": [1]}, "non-empty strings"),
        ({"tags": [""]}, "non-empty strings"),
        ({"tag": ["x"]}, "unknown fields"),
        ({"tags": ["x"], "soft": "yes"}, "true or false"),
        ({"urls": ["relative/path"]}, "starting with '/'"),
        ({"tags": [f"t{i}" for i in range(11)]}, "limit is 10"),
    ],
)
def test_bad_bodies_are_rejected_with_a_reason(body, message):
    with pytest.raises(BadPurgeRequest, match=message):
        parse_purge_request(body, max_items=10)
