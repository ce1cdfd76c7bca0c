"""The import's decisions, table-driven, without libpff or a fixture."""

from datetime import UTC, datetime, timedelta

import pytest

from fund_mail.pst import rules
from fund_mail.pst.rules import FolderInfo

SYSTEM = [FolderInfo(8739, "SPAM Search Folder 2", 0), FolderInfo(1, "Search Root", 1)]
TOP = FolderInfo(32802, "Top of Personal Folders", 12)


@pytest.mark.parametrize(
    ("children", "subtree_id", "grandchildren", "expected"),
    [
        # A PST whose store names its IPM subtree.
        ([*SYSTEM, TOP, FolderInfo(33314, "Freebusy Data", 0)], 32802, {}, 32802),
        # Exchange OST: no subtree id; Root - Mailbox / IPM_SUBTREE.
        (
            [FolderInfo(5, "Root - Mailbox", 3)],
            None,
            {5: [FolderInfo(6, "Common Views", 0), FolderInfo(7, "IPM_SUBTREE", 9)]},
            7,
        ),
        # IMAP-style PST: no subtree id, one mail folder at the root besides machinery.
        ([*SYSTEM, FolderInfo(40, "Personal Folders", 5)], None, {}, 40),
        # A subtree id that names nothing at the root: still found by its name.
        ([*SYSTEM, FolderInfo(41, "IPM_SUBTREE", 2)], 999, {}, 41),
        # Two candidate tops: paths start at the root.
        ([FolderInfo(50, "Inbox", 0), FolderInfo(51, "Sent Messages", 0)], None, {}, None),
    ],
)
def test_mailbox_top(children, subtree_id, grandchildren, expected):
    assert rules.mailbox_top(children, subtree_id, grandchildren)[0] == expected


@pytest.mark.parametrize(
    "name",
    ["Sent Items", "Sent Messages", "보낸 편지함", "Éléments envoyés", "Gesendete Elemente",
     "Posta inviata", "Elementos enviados", "sent items/2019"],
)  # fmt: skip
def test_sent_folder_names_in_six_languages(name):
    assert rules.is_sent_folder_name(name)
    assert rules.sent_rule(
        in_sent_folder_by_id=False, flags=0, folder_path=name, sender="", owners=[]
    ).startswith("sent: in a folder named")


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"in_sent_folder_by_id": True}, "sent: in the store's Sent Items folder"),
        ({"flags": rules.MSGFLAG_FROMME}, "sent: flagged MSGFLAG_FROMME"),
        ({"folder_path": "Sent Messages"}, "sent: in a folder named 'Sent Messages'"),
        (
            {"sender": "Kim@Fund.example", "owners": ["kim@fund.example"]},
            "sent: the sender Kim@Fund.example is the store owner",
        ),
        ({"sender": "lee@other.example", "owners": ["kim@fund.example"]}, None),
        ({"folder_path": "Inbox/Sent stuff"}, None),
    ],
)
def test_sent_rule_names_the_rule(kwargs, expected):
    args = {
        "in_sent_folder_by_id": False,
        "flags": 0,
        "folder_path": "Inbox",
        "sender": "",
        "owners": [],
    }
    assert rules.sent_rule(**{**args, **kwargs}) == expected


def test_store_owner_is_the_most_frequent_sent_sender():
    assert rules.store_owner(["a@x.kr", "B@x.kr", "b@x.kr", "", "/O=EX/CN=C"]) == "b@x.kr"
    assert rules.store_owner([]) is None


@pytest.mark.parametrize(
    ("message_class", "flags", "expected"),
    [
        ("IPM.Note", 0, None),
        ("IPM.Note.SMIME.MultipartSigned", 0, None),
        ("IPM.Schedule.Meeting.Request", 0, None),
        ("IPM.Schedule.Meeting.Resp.Pos", 0, None),
        ("REPORT.IPM.Note.NDR", 0, None),
        ("REPORT.IPM.Note.IPNRN", 0, None),
        ("REPORT.IPM.Note.DR", 0, None),
        ("IPM.Note", rules.MSGFLAG_UNSENT, "draft (IPM.Note)"),
        ("IPM.Appointment", 0, "IPM.Appointment"),
        ("IPM.Contact", 0, "IPM.Contact"),
        ("IPM.DistList", 0, "IPM.DistList"),
        ("IPM.Task", 0, "IPM.Task"),
        ("IPM.Microsoft.ScheduleData.FreeBusy", 0, "IPM.Microsoft.ScheduleData.FreeBusy"),
        ("", 0, "(no message class)"),
    ],
)
def test_classify_like_the_live_path(message_class, flags, expected):
    assert rules.classify(message_class, flags) == expected


DN = "/O=FUND/OU=EXCHANGE ADMINISTRATIVE GROUP/CN=RECIPIENTS/CN=KIM"
HEADERS = (
    "From: Kim Minsu <kim@fund.example>\r\nTo: Lee <lee@fund.example>, park@fund.example\r\n"
    "Date: Tue, 04 Jun 2019 09:15:00 +0900\r\n\r\n"
)


@pytest.mark.parametrize(
    ("kwargs", "address", "note"),
    [
        ({"smtp": ["kim@fund.example"], "address": DN}, "kim@fund.example", ""),
        ({"address": "kim@fund.example"}, "kim@fund.example", ""),
        (
            {"address": DN, "accounts": rules.send_account_pairs([f"00000002\x01{DN}\x01k@f.kr"])},
            "k@f.kr",
            "sender address from the send account",
        ),
        (
            {"address": DN, "headers": rules.header_addresses(HEADERS, "Sender", "From")},
            "kim@fund.example",
            "sender address from the transport headers",
        ),
        (
            {"address": DN, "name": "Lee", "headers": rules.header_addresses(HEADERS, "To")},
            "lee@fund.example",
            "sender address from the transport headers",
        ),
        (
            {"address": DN, "directory": rules.directory_pairs([(DN.lower(), "kim@f.kr")])},
            "kim@f.kr",
            "sender address from the Sent folders' recipients",
        ),
        ({"address": DN}, DN, "sender address is an Exchange DN with no SMTP address"),
    ],
)
def test_resolve_address_never_empty_for_an_exchange_sender(kwargs, address, note):
    args = {"smtp": [], "address": "", "name": "", "accounts": {}, "headers": [], "directory": {}}
    found = rules.resolve_address("sender", **{**args, **kwargs})
    assert (found.address, found.note) == (address, note)


T = datetime(2019, 6, 4, 0, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("times", "expected", "source"),
    [
        ((T, T + timedelta(1), None, None), T, ""),
        ((None, T, None, T + timedelta(17)), T, "submit time"),
        ((None, None, T, T + timedelta(17)), T, "transport headers"),
        ((None, None, None, T), T, "creation time"),
        ((datetime(1601, 1, 1, tzinfo=UTC), None, None, None), None, "no delivery"),
    ],
)
def test_choose_time_prefers_delivery_then_submit_then_headers(times, expected, source):
    moment, note = rules.choose_time(*times)
    assert moment == expected
    assert source in note and (note == "") == (source == "")


def test_header_date():
    assert rules.header_date(HEADERS) == T
    assert rules.header_date("Subject: x\r\n\r\n") is None
    assert rules.header_date("Date: not a date\r\n\r\n") is None
