"""The emulator mirrors the Graph behaviour listed in GRAPH_FACTS.md."""

from datetime import timedelta

import pytest
import requests

from fund_mail.emulator import (
    file_attachment,
    inner_message,
    item_attachment,
    reference_attachment,
)
from fund_mail.graph.auth import TokenProvider

IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


class Api:
    def __init__(self, graph, token):
        self.base = f"{graph.url}/v1.0/users/{graph.mailbox.address}"
        self.auth = {"Authorization": f"Bearer {token}"}

    def __call__(self, path, params=None, headers=None):
        return self.url(f"{self.base}{path}", params, headers)

    def url(self, url, params=None, headers=None):
        return requests.get(
            url, params=params, timeout=10, headers={**self.auth, **(headers or {})}
        )


@pytest.fixture
def get(graph, config):
    return Api(graph, TokenProvider(config).token())


def test_orderby_must_lead_the_filter(get, graph, now):
    graph.mailbox.add_message(now)
    bad = get(
        "/messages",
        {
            "$filter": "isDraft eq false and receivedDateTime ge 2020-01-01T00:00:00Z",
            "$orderby": "receivedDateTime desc",
        },
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "InefficientFilter"
    assert "too complex" in bad.json()["error"]["message"]
    good = get(
        "/messages",
        {
            "$filter": "receivedDateTime ge 2020-01-01T00:00:00Z and isDraft eq false",
            "$orderby": "receivedDateTime desc",
        },
    )
    assert good.status_code == 200 and len(good.json()["value"]) == 1


def test_top_defaults_to_10_and_caps_at_1000(get, graph, now):
    for i in range(12):
        graph.mailbox.add_message(now - timedelta(seconds=i))
    page = get("/messages").json()
    assert len(page["value"]) == 10 and "%24skip=10" in page["@odata.nextLink"]
    assert get("/messages", {"$top": "1001"}).status_code == 400


def test_next_link_keeps_the_query_and_pages_by_skip(get, graph, now):
    for i in range(5):
        graph.mailbox.add_message(now - timedelta(minutes=i))
    first = get(
        "/messages",
        {
            "$top": "2",
            "$select": "id,subject",
            "$filter": "receivedDateTime ge 2020-01-01T00:00:00Z",
            "$orderby": "receivedDateTime desc",
        },
    ).json()
    link = first["@odata.nextLink"]
    assert "%24select=id%2Csubject" in link and "%24skip=2" in link
    second = get.url(link).json()
    assert len(second["value"]) == 2 and "%24skip=4" in second["@odata.nextLink"]
    assert set(second["value"][0]) == {"@odata.etag", "id", "subject"}


def test_filters_on_dates_and_drafts(get, graph, now):
    graph.mailbox.add_message(now - timedelta(days=2))
    graph.mailbox.add_message(now, is_draft=True, folder="drafts")
    kept = graph.mailbox.add_message(now - timedelta(hours=1))
    stamp = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    page = get(
        "/messages", {"$filter": f"receivedDateTime gt {stamp} and isDraft eq false"}, IMMUTABLE
    ).json()
    assert [m["id"] for m in page["value"]] == [kept.immutable_id]
    either = get("/messages", {"$filter": f"receivedDateTime lt {stamp} or isDraft eq true"}).json()
    assert len(either["value"]) == 2


def test_select_limits_fields_and_rejects_unknown_ones(get, graph, now):
    graph.mailbox.add_message(now)
    message = get("/messages", {"$select": "subject"}).json()["value"][0]
    assert set(message) == {"@odata.etag", "id", "subject"}
    assert get("/messages", {"$select": "subject,nonsense"}).status_code == 400


def test_expand_attachments_without_content_bytes(get, graph, now):
    graph.mailbox.add_message(
        now,
        attachments=[
            file_attachment("a.pdf", b"abc"),
            item_attachment("fwd", inner_message("inner", ("A", "a@x.com"), "<p>x</p>")),
            reference_attachment("link.docx", "https://x/link.docx"),
        ],
    )
    expand = "attachments($select=id,name,contentType,size,isInline)"
    message = get("/messages", {"$expand": expand}).json()["value"][0]
    kinds = [a["@odata.type"] for a in message["attachments"]]
    assert kinds == [
        "#microsoft.graph.fileAttachment",
        "#microsoft.graph.itemAttachment",
        "#microsoft.graph.referenceAttachment",
    ]
    assert all("contentBytes" not in a for a in message["attachments"])
    assert get("/messages", {"$expand": "attachments($select=contentId)"}).status_code == 400
    graph.list_reference_attachments = False  # reference attachments may be missing from lists
    message = get("/messages", {"$expand": expand}).json()["value"][0]
    assert len(message["attachments"]) == 2


def test_attachment_values_for_each_kind(get, graph, now):
    message = graph.mailbox.add_message(
        now,
        attachments=[
            file_attachment("a.pdf", b"raw-bytes"),
            item_attachment("fwd", inner_message("Inner subject", ("A", "a@x.com"), "<p>x</p>")),
            reference_attachment("link.docx", "https://x/link.docx"),
        ],
    )
    base = f"/messages/{message.immutable_id}/attachments"
    ids = [a.id for a in message.attachments]
    assert get(f"{base}/{ids[0]}/$value").content == b"raw-bytes"
    mime = get(f"{base}/{ids[1]}/$value")
    assert (
        mime.headers["Content-Type"] == "message/rfc822"
        and b"Subject: Inner subject" in mime.content
    )
    assert get(f"{base}/{ids[2]}/$value").status_code == 405
    whole = get(f"/messages/{message.immutable_id}/$value")
    assert b"Content-Type: multipart/mixed" in whole.content


def test_ids_change_on_move_unless_immutable(get, graph, now):
    message = graph.mailbox.add_message(now)
    rest_id = get("/messages").json()["value"][0]["id"]
    immutable_id = get("/messages", headers=IMMUTABLE).json()["value"][0]["id"]
    graph.mailbox.move(message, "archive")
    assert get("/messages").json()["value"][0]["id"] != rest_id
    assert get("/messages", headers=IMMUTABLE).json()["value"][0]["id"] == immutable_id
    assert get(f"/messages/{rest_id}").status_code == 404
    assert get(f"/messages/{immutable_id}").status_code == 200


def test_body_content_type_preference(get, graph, now):
    graph.mailbox.add_message(now, body_html="<p>안녕 <b>world</b></p>")
    text = get("/messages", headers={"Prefer": 'outlook.body-content-type="text"'})
    assert text.json()["value"][0]["body"] == {"contentType": "text", "content": "안녕 world"}
    assert 'outlook.body-content-type="text"' in text.headers["Preference-Applied"]
    html = get("/messages").json()["value"][0]["body"]
    assert html["contentType"] == "html" and "<b>" in html["content"]


def test_folders_and_well_known_names(get, graph):
    funds = graph.mailbox.add_folder("Funds", parent="inbox")
    inbox = get("/mailFolders/inbox").json()
    assert inbox["displayName"] == "Inbox" and inbox["childFolderCount"] == 1
    assert get(f"/mailFolders/{funds.id}").json()["parentFolderId"] == inbox["id"]
    children = get(f"/mailFolders/{inbox['id']}/childFolders").json()["value"]
    assert [c["displayName"] for c in children] == ["Funds"]
    top = get("/mailFolders", {"$top": "100"}).json()["value"]
    assert {"Inbox", "Sent Items", "Drafts"} <= {f["displayName"] for f in top}


def test_unknown_user_and_bad_token(graph, get):
    bad = requests.get(
        f"{graph.url}/v1.0/users/{graph.mailbox.address}/messages",
        headers={"Authorization": "Bearer nope"},
        timeout=10,
    )
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == "InvalidAuthenticationToken"
    other = get.url(f"{graph.url}/v1.0/users/other@example.com/messages")
    assert other.status_code == 404


def test_concurrency_over_four_is_throttled(graph, get, now):
    import threading

    graph.mailbox.add_message(now)
    graph.latency = 0.3
    statuses = []
    threads = [
        threading.Thread(target=lambda: statuses.append(get("/messages").status_code))
        for _ in range(6)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert statuses.count(429) >= 1 and statuses.count(200) >= 4
    throttled = [r for r in graph.records("list") if r.status == 429]
    assert all(r.retry_after for r in throttled)


def test_token_endpoint_errors_look_like_entra(graph):
    url = f"{graph.url}/{graph.registration.tenant_id}/oauth2/v2.0/token"
    form = {
        "client_id": graph.registration.client_id,
        "grant_type": "client_credentials",
        "scope": f"{graph.url}/.default",
        "client_secret": "wrong",
    }
    body = requests.post(url, data=form, timeout=10)
    assert body.status_code == 401
    error = body.json()
    assert error["error"] == "invalid_client" and error["error_codes"] == [7000215]
    assert {"timestamp", "trace_id", "correlation_id"} <= set(error)
    form["client_secret"] = graph.registration.client_secret
    ok = requests.post(url, data=form, timeout=10).json()
    assert ok["token_type"] == "Bearer" and ok["expires_in"] == 3599


def test_pre_rendered_list_pages_are_the_same_bytes(graph, config, now):
    """The render cache changes how fast a page is built, not what it says."""
    import json

    from fund_mail.emulator import file_attachment
    from fund_mail.graph.client import ATTACHMENT_EXPAND, MESSAGE_FIELDS

    message = graph.mailbox.add_message(
        now, subject="é", attachments=[file_attachment("a.pdf", b"%PDF")]
    )
    graph.mailbox.add_message(now - timedelta(seconds=1))
    url = f"{graph.url}/v1.0/users/{config.email_id}/messages"
    params = {"$select": MESSAGE_FIELDS, "$expand": ATTACHMENT_EXPAND, "$top": "1",
              "$orderby": "receivedDateTime desc"}  # fmt: skip
    tokens = TokenProvider(config)

    def page() -> bytes:
        headers = {"Authorization": f"Bearer {tokens.token()}"}
        return requests.get(url, params=params, headers=headers, timeout=10).content

    first = page()
    graph.prerender(MESSAGE_FIELDS, ATTACHMENT_EXPAND)
    assert page() == first
    assert list(json.loads(first)) == ["@odata.context", "value", "@odata.nextLink"]
    assert json.loads(first)["value"][0]["subject"] == "é"
    message.subject = "changed"  # a changed message is rendered again
    assert json.loads(page())["value"][0]["subject"] == "changed"


def test_sendmail_answers_202_and_rejects_what_graph_rejects(graph, config):
    token = TokenProvider(config).token()
    url = f"{graph.url}/v1.0/users/{config.email_id}/sendMail"
    headers = {"Authorization": f"Bearer {token}"}
    message = {
        "subject": "보고 report",
        "body": {"contentType": "text", "content": "x"},
        "toRecipients": [{"emailAddress": {"address": "ops@example.com"}}],
    }
    sent = requests.post(url, json={"message": message, "saveToSentItems": False},
                         headers=headers, timeout=10)  # fmt: skip
    assert (sent.status_code, sent.content) == (202, b"")
    assert graph.sent_mail[0]["subject"] == "보고 report"
    no_one = requests.post(url, json={"message": {**message, "toRecipients": []}},
                           headers=headers, timeout=10)  # fmt: skip
    assert no_one.status_code == 400
    assert no_one.json()["error"]["code"] == "ErrorInvalidRecipients"
    assert requests.post(url, json={"message": message}, timeout=10).status_code == 401
    graph.allow_send = False
    denied = requests.post(url, json={"message": message}, headers=headers, timeout=10)
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "ErrorAccessDenied"
    assert len(graph.sent_mail) == 1
