"""Faithful import on the shared fixtures: an embedded message with its own attachment, an
Exchange sender with no SMTP property, the OST decision, the block decoding."""

import email
import email.policy
import io
import sqlite3
import struct
import subprocess
import zipfile
from datetime import UTC, datetime

import pypff  # noqa: F401 - a missing libpff must fail these tests, not skip them

from fund_mail.pst import ndb
from fund_mail.pst import props as pst_props
from fund_mail.pst.crypt import DECODE
from tests.helpers import run_cli
from tests.pst.fixtures import fixture
from tests.pst.patching import NID_MESSAGE_STORE, PatchedPst
from tests.pst.test_readpst_oracle import readpst


def import_fixture(name, target):
    result = run_cli("fund_mail_pst", str(fixture(name)), "--target", str(target))
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def readpst_docx(tmp_path) -> bytes:
    out = tmp_path / "readpst"
    out.mkdir()
    # -j 0: readpst's forking can skip a mail under load (see test_readpst_oracle.oracle).
    subprocess.run(
        [readpst(), "-j", "0", "-S", "-q", "-o", str(out), str(fixture("testPST.pst"))], check=True
    )
    for path in out.rglob("*"):
        if path.is_file() and b"attachment.docx" in path.read_bytes():
            raw = path.read_bytes().replace(b"\n>From ", b"\nX-Mbox: ")
            outer = email.message_from_bytes(raw, policy=email.policy.default)
            for part in outer.walk():
                if part.get_filename() == "attachment.docx":
                    return part.get_payload(decode=True)
    raise AssertionError("readpst did not write attachment.docx")


def test_embedded_message_keeps_its_own_attachment(tmp_path):
    import_fixture("testPST.pst", tmp_path)
    with sqlite3.connect(tmp_path / "testPST.db") as conn:
        (row_id, sender, author, kind, note) = conn.execute(
            "SELECT id, sender_address, from_address, msg_kind, note FROM fund_mail "
            "WHERE subject = 'FW: First email'"
        ).fetchone()
        ((folder, phy, name, size),) = conn.execute(
            "SELECT save_folder, phy_file_name, org_file_name, file_size FROM fund_mail_attach "
            "WHERE parent_id = ?",
            (row_id,),
        ).fetchall()
    data = (tmp_path / folder / phy).read_bytes()
    assert phy.endswith(".eml") and name == "First email" and size == len(data)
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["Subject"] == "First email"
    assert message["From"].addresses[0].addr_spec == "nassif.lfcn@pf.gov.br"
    assert message.get_body(("plain",)).get_content().startswith("Docx file attached.")
    (docx,) = list(message.iter_attachments())
    assert docx.get_filename() == "attachment.docx"
    content = docx.get_payload(decode=True)
    assert len(content) == 11862
    assert "word/document.xml" in zipfile.ZipFile(io.BytesIO(content)).namelist()
    assert content == readpst_docx(tmp_path), "the same bytes as the independent reader"
    # The Exchange sender has no SMTP property: its address comes from the send account.
    assert sender == author == "nassif.lfcn@pf.gov.br"
    assert kind == "sent"
    assert "sender address from the send account" in note
    assert "sent: the sender nassif.lfcn@pf.gov.br is the store owner" in note


def test_ost_is_refused_with_a_way_out(tmp_path):
    data = bytearray(fixture("dist-list.pst").read_bytes())
    data[8:10] = b"SO"  # wMagicClient of an OST
    ost = tmp_path / "mailbox.ost"
    ost.write_bytes(data)
    result = run_cli("fund_mail_pst", str(ost), "--target", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert "is an OST" in result.stderr and "Outlook Data File (.pst)" in result.stderr
    assert not (tmp_path / "out" / "mailbox.db").exists()


def test_decode_table_is_a_permutation_that_matches_libpff():
    assert sorted(DECODE) == list(range(256))
    with ndb.PstFile(fixture("Outlook.pst")) as pst:
        assert pst.crypt == 1
        handle = pypff.file()
        handle.open(str(fixture("Outlook.pst")))
        inbox = handle.get_root_folder().get_sub_folder(1).get_sub_folder(1)
        message = inbox.get_sub_message(0)
        attachment = message.get_attachment(1)  # Sunset.jpg
        node = pst.node(message.identifier)
        attachment_node = pst.sub_nodes(node.sub_bid)[attachment.identifier]
        values = ndb.property_context(
            pst.data_blocks(attachment_node.data_bid),
            pst.sub_nodes(attachment_node.sub_bid),
            pst,
        )
        assert values[pst_props.PR_ATTACH_DATA][1] == attachment.read_buffer(attachment.size)
        handle.close()


# -- a property context built by hand ----------------------------------------------------------
def heap(properties: list[tuple[int, int, bytes | int]]) -> bytes:
    """A one-block property context, laid out as [MS-PST] 2.3.1 describes."""
    allocations: list[bytes] = []

    def hid(data: bytes) -> int:
        allocations.append(data)
        return len(allocations) << 5

    records = b""
    for prop, value_type, value in properties:
        raw = value if isinstance(value, int) else hid(value)
        records += struct.pack("<HHI", prop, value_type, raw)
    records_hid = hid(records)
    root = hid(struct.pack("<BBBBI", 0xB5, 2, 6, 0, records_hid))
    body, offsets = b"", [12]
    for data in allocations:
        body += data
        offsets.append(12 + len(body))
    page_map = 12 + len(body)
    header = struct.pack("<HBBI", page_map, 0xEC, 0xBC, root) + b"\x00" * 4
    return (
        header
        + body
        + struct.pack("<HH", len(allocations), 0)
        + struct.pack(f"<{len(offsets)}H", *offsets)
    )


def test_property_context_reader():
    when = datetime(2011, 6, 21, 23, 47, 1, tzinfo=UTC)
    ticks = int((when - pst_props.FILETIME_EPOCH).total_seconds() * 10_000_000)
    buffer = heap(
        [
            (pst_props.PR_SUBJECT, 0x1F, "\x01\x01메시지 1".encode("utf-16-le")),
            (pst_props.PR_MESSAGE_FLAGS, 0x03, 0x11),
            (pst_props.PR_CLIENT_SUBMIT_TIME, 0x40, struct.pack("<Q", ticks)),
            (pst_props.PR_BODY, 0x1F, 0x87BF),  # a node id: kept in a sub-node
            (pst_props.PR_SENDER_NAME, 0x1E, "김".encode("cp949")),
        ]
    )
    values = ndb.property_context([buffer], {}, None, "cp949")
    assert pst_props.strip_subject_prefix(values[pst_props.PR_SUBJECT][1]) == "메시지 1"
    assert values[pst_props.PR_MESSAGE_FLAGS] == (0x03, 0x11)
    assert values[pst_props.PR_CLIENT_SUBMIT_TIME][1] == when
    assert values[pst_props.PR_BODY][1] is None
    assert values[pst_props.PR_SENDER_NAME][1] == "김"


# -- fixture copies with one property changed (tests/pst/patching.py) ---------------------------
def rows_of(db):
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute("SELECT * FROM fund_mail ORDER BY id")]


def test_store_without_subtree_and_sent_ids(tmp_path):
    """An IMAP-style store: no IPM-subtree id, no Sent Items id. Paths and Sent still right."""
    copy = (
        PatchedPst(fixture("Outlook.pst"))
        .change(NID_MESSAGE_STORE, pst_props.PR_IPM_SUBTREE_ENTRYID, new_id=0x7FF1)
        .change(NID_MESSAGE_STORE, pst_props.PR_IPM_SENTMAIL_ENTRYID, new_id=0x7FF2)
        .write(tmp_path / "imap.pst")
    )
    result = run_cli("fund_mail_pst", str(copy), "--target", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Mailbox top: the root's single mail folder." in result.stdout
    mails = rows_of(tmp_path / "out" / "imap.db")
    assert {m["folder_path"] for m in mails} == {"Inbox", "Sent Items"}
    sent_items = [m for m in mails if m["folder_path"] == "Sent Items"]
    assert len(sent_items) == 5
    assert {(m["msg_kind"], m["note"]) for m in sent_items} == {
        ("sent", "sent: in a folder named 'Sent Items'")
    }


def test_drafts_are_left_out_and_counted(tmp_path):
    message_1 = 2097700  # Inbox / "message 1"
    copy = (
        PatchedPst(fixture("Outlook.pst"))
        .change(message_1, pst_props.PR_MESSAGE_FLAGS, value=0x08)  # MSGFLAG_UNSENT
        .write(tmp_path / "drafts.pst")
    )
    result = run_cli("fund_mail_pst", str(copy), "--target", str(tmp_path / "out"))
    assert result.returncode == 0, result.stdout + result.stderr
    mails = rows_of(tmp_path / "out" / "drafts.db")
    assert len(mails) == 10 and str(message_1) not in {m["email_id"] for m in mails}
    assert "draft (IPM.Note) 1" in result.stdout
    assert "Archived: IPM.Note 10" in result.stdout


def test_dates_fall_back_to_submit_time_then_header_date(tmp_path):
    feature_generators = 2097188  # testPST / "Re: Feature Generators"
    no_delivery = PatchedPst(fixture("testPST.pst")).change(
        feature_generators, pst_props.PR_MESSAGE_DELIVERY_TIME, new_id=0x7FF3
    )
    import_fixture_copy = no_delivery.write(tmp_path / "submit.pst")
    run_cli("fund_mail_pst", str(import_fixture_copy), "--target", str(tmp_path / "a"))
    (first, *_) = rows_of(tmp_path / "a" / "submit.db")
    assert first["email_time"] == "2014-02-26 07:50:04"
    assert first["note"] == "date from the submit time (no delivery time)"

    no_submit = no_delivery.change(
        feature_generators, pst_props.PR_CLIENT_SUBMIT_TIME, new_id=0x7FF4
    ).write(tmp_path / "header.pst")
    run_cli("fund_mail_pst", str(no_submit), "--target", str(tmp_path / "b"))
    (first, *_) = rows_of(tmp_path / "b" / "header.db")
    assert first["email_time"] == "2014-02-26 07:50:04"  # Date: Wed, 26 Feb 2014 08:50:04 +0100
    assert first["kst_time"] == "2014-02-26 16:50:04"
    assert first["note"] == "date from the transport headers (no delivery or submit time)"


def test_an_unreadable_part_of_an_embedded_message_is_counted_and_noted(tmp_path, monkeypatch):
    """The docx inside "FW: First email" made unreadable: the .eml is still written, the part
    is named in the row's note and listed in the report, which does not claim all was read."""
    from zoneinfo import ZoneInfo

    from fund_mail.pst import importer
    from fund_mail.pst.report import ALL_READ

    real = importer.read_embedded

    def without_docx_data(*args):
        message = real(*args)
        message.attachments[0].values[pst_props.PR_ATTACH_DATA] = (0x102, None)
        return message

    monkeypatch.setattr(importer, "read_embedded", without_docx_data)
    report = importer.import_pst(fixture("testPST.pst"), tmp_path, ZoneInfo("Asia/Seoul"))
    text = report.render()
    assert ALL_READ not in text and "NOT everything was read" in text
    reason = (
        "embedded message 'First email': attachment 1 (attachment.docx): its data could not be read"
    )
    assert f"(top) / FW: First email: {reason}" in text
    (note,) = [
        r["note"] for r in rows_of(tmp_path / "testPST.db") if r["subject"] == "FW: First email"
    ]
    assert reason in note


def test_a_damaged_block_inside_an_embedded_message_is_caught_by_its_crc(tmp_path):
    """One byte changed in the data of the nested attachment.docx: not imported silently wrong,
    but listed, noted, and the run exits 1."""
    source = fixture("testPST.pst")
    blocks: list[tuple[int, int]] = []

    class Recording(ndb.PstFile):
        def block(self, bid):
            entry = self._search(self.bbt_root, bid & ~1)
            blocks.append((self._uint(entry, 8), struct.unpack_from("<H", entry, 16)[0]))
            return super().block(bid)

    with Recording(source) as pst:
        ndb.read_embedded(pst, 2097380, 0x8025, "cp1252")  # "FW: First email"
    offset, length = max(blocks, key=lambda b: b[1])  # the docx data
    data = bytearray(source.read_bytes())
    data[offset + length // 2] ^= 0x5A
    damaged = tmp_path / "damaged.pst"
    damaged.write_bytes(data)
    result = run_cli("fund_mail_pst", str(damaged), "--target", str(tmp_path / "out"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "fails its CRC check" in result.stdout and "NOT everything was read" in result.stdout
    (note,) = [
        r["note"]
        for r in rows_of(tmp_path / "out" / "damaged.db")
        if r["subject"] == "FW: First email"
    ]
    assert "embedded message 'First email': attachment 1: block" in note


def test_named_property_map_finds_the_account_address():
    """PidLidInternetAccountName is a named property: its id differs from PST to PST."""
    for name, prop, account in (
        ("testPST.pst", 0x800D, "Hong-Thai.Nguyen@polyspot.com"),
        ("Outlook.pst", 0x801A, "saqib.razzaq@xp.local"),
    ):
        handle = pypff.file()
        handle.open(str(fixture(name)))
        try:
            named = pst_props.named_property_ids(handle)
            assert named[(pst_props.PSETID_COMMON, pst_props.LID_INTERNET_ACCOUNT_NAME)] == prop
            folder = handle.get_root_folder().get_sub_folder(1)
            message = (
                folder if name == "testPST.pst" else folder.get_sub_folder(1)
            ).get_sub_message(0)
            assert pst_props.text(pst_props.entries(message), prop) == account
        finally:
            handle.close()


def test_name_map_string_names_and_property_sets():
    guids = bytes.fromhex("0820060000000000c000000000000046")  # PSETID_Common, as stored
    strings = struct.pack("<I", 10) + "x-mailer".encode("utf-16-le")[:10]
    entries = struct.pack("<IHH", 0x8580, 3 << 1, 0x0D) + struct.pack("<IHH", 0, (2 << 1) | 1, 0x0E)
    assert pst_props.parse_name_map(guids, entries, strings) == {
        (pst_props.PSETID_COMMON, 0x8580): 0x800D,
        (pst_props.PS_PUBLIC_STRINGS, "x-mai"): 0x800E,
    }
