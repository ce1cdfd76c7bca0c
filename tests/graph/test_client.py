"""Reading Graph's JSON: a huge or deeply nested answer is refused with a clear error."""

import io

import pytest
import requests

from fund_mail.errors import GraphError
from fund_mail.graph.client import read_json


def response(body: bytes, length: int | None = None) -> requests.Response:
    answer = requests.Response()
    answer.status_code = 200
    answer.url = "https://graph.example/v1.0/users/x/messages?$top=5"
    answer.raw = io.BytesIO(body)
    if length is not None:
        answer.headers["Content-Length"] = str(length)
    return answer


def test_an_ordinary_page():
    assert read_json(response(b'{"value": [{"id": "1"}]}'), 1000) == {"value": [{"id": "1"}]}


def test_deep_nesting_is_refused():
    deep = b'{"value": ' + b"[" * 200_000 + b"]" * 200_000 + b"}"
    with pytest.raises(GraphError, match="nested too deeply"):
        read_json(response(deep), len(deep))


@pytest.mark.parametrize("declared", [None, 10_000])
def test_a_huge_answer_is_refused_without_reading_it_all(declared):
    with pytest.raises(GraphError, match="lower PAGE_SIZE"):
        read_json(response(b'{"value": "' + b"x" * 5000 + b'"}', declared), 1000)


def test_not_an_object():
    with pytest.raises(GraphError, match="not a JSON object"):
        read_json(response(b"[1, 2]"), 1000)
