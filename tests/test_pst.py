"""fund_mail_pst on the PST fixtures in ../shared/fixtures/pst (read there, never copied into
the repository), plus the parts that need no libpff."""

import random
import sqlite3
import struct
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fund_mail.pst import props as pst_props
from fund_mail.pst.importer import FolderTally, ImportReport, Problem, _decode
from tests.helpers import run_cli
from tests.test_store import assert_pst_utils_schema

FIXTURES = Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "pst"
OUTLOOK = FIXTURES / "Outlook.pst"
SEOUL = ZoneInfo("Asia/Seoul")

needs_fixtures = pytest.mark.skipif(
    not OUTLOOK.exists(), reason=f"PST fixtures not found at {FIXTURES} (shared/fixtures/pst)"
)
try:
    import pypff  # noqa: F401

    HAVE_PYPFF = True
except ImportError:
    HAVE_PYPFF = False
needs_pypff = pytest.mark.skipif(
    not HAVE_PYPFF, reason="libpff-python is not installed (uv sync --extra pst)"
)


def rows(db: Path, sql: str) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql)]


def pst(*args: str):
    return run_cli("fund_mail_pst", *args)


# -- with libpff and the fixtures ---------------------------------------------------------------
@needs_fixtures
@needs_pypff
def test_outlook_pst_import(tmp_path):
    result = pst(str(OUTLOOK), "--target", str(tmp_path))
    assert result.returncode == 0, result.stderr
    db = tmp_path / "Outlook.db"
    assert_pst_utils_schema(db)
    mails = rows(db, "SELECT * FROM fund_mail ORDER BY id")
    assert len(mails) == 11
    by_folder = {(m["folder_path"], m["msg_kind"]) for m in mails}
    assert by_folder == {("Inbox", "receive"), ("Sent Items", "sent")}
    first = mails[0]
    assert first["subject"] == "Multiple attachments"
    assert first["sender_address"] == "saqib.razzaq@xp.local"
    assert first["email_time"] == "2011-06-21 23:51:07"
    assert first["kst_time"] == "2011-06-22 08:51:07"
    assert first["content"].startswith("This message contains multiple attachments")
    assert all(m["email_id"].isdigit() for m in mails), "email_id is the PST node id"
    attachments = rows(db, "SELECT * FROM fund_mail_attach")
    assert len(attachments) == 34
    for a in attachments:
        assert a["save_folder"] == "attach/2011_06_22"
        assert (tmp_path / a["save_folder"] / a["phy_file_name"]).stat().st_size == a["file_size"]
    names = {a["org_file_name"] for a in attachments}
    assert {"text file.txt", "Sunset.jpg", "Blue hills.jpg"} <= names
    embedded = [a for a in attachments if a["phy_file_name"].endswith(".eml")]
    assert len(embedded) == 4, "the embedded messages of both copies are saved as .eml"
    eml = (tmp_path / embedded[0]["save_folder"] / embedded[0]["phy_file_name"]).read_text()
    assert "Subject: message" in eml and "From: Saqib Razzaq <saqib.razzaq@xp.local>" in eml
    report = result.stdout
    assert "Inbox" in report and "17/17" in report and "total" in report
    assert (
        "Skipped (not mail): IPM.Appointment 1, IPM.Contact 1, "
        "IPM.Microsoft.ScheduleData.FreeBusy 1" in report
    )
    assert "Every item and attachment was read." in report


@needs_fixtures
@needs_pypff
def test_import_resumes_without_duplicates(tmp_path):
    assert pst(str(OUTLOOK), "--target", str(tmp_path)).returncode == 0
    db = tmp_path / "Outlook.db"
    with sqlite3.connect(db) as conn:  # as if the last batch had not been committed
        conn.execute("DELETE FROM fund_mail_attach WHERE parent_id > 8")
        conn.execute("DELETE FROM fund_mail WHERE id > 8")
    again = pst(str(OUTLOOK), "--target", str(tmp_path))
    assert again.returncode == 0, again.stderr
    ids = [r["email_id"] for r in rows(db, "SELECT email_id FROM fund_mail")]
    assert len(ids) == 11 == len(set(ids))
    assert "total                                        14      3      8" in again.stdout
    third = pst(str(OUTLOOK), "--target", str(tmp_path))
    assert "total                                        14      0     11" in third.stdout
    assert len(rows(db, "SELECT id FROM fund_mail_attach")) == 34


@needs_fixtures
@needs_pypff
def test_pst_without_mail_counts_and_skips_everything(tmp_path):
    result = pst(str(FIXTURES / "dist-list.pst"), "--target", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert rows(tmp_path / "dist-list.db", "SELECT id FROM fund_mail") == []
    assert "IPM.Appointment 1" in result.stdout and "IPM.DistList 1" in result.stdout
    assert "IPM.Contact 1" in result.stdout


@needs_fixtures
@needs_pypff
@pytest.mark.parametrize("seed", [4, 10, 32])
def test_corrupted_items_are_survived_and_listed(tmp_path, seed):
    """Flip bytes in a copy (in tmp_path) of the fixture: a damaged folder, item or attachment
    is listed with its reason; everything else is imported."""
    data = bytearray(OUTLOOK.read_bytes())
    rng = random.Random(seed)
    for _ in range(30):
        data[rng.randrange(200_000, len(data))] ^= 0xFF
    damaged = tmp_path / "damaged.pst"
    damaged.write_bytes(data)
    result = pst(str(damaged), "--target", str(tmp_path / "out"))
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "Could not be read (" in result.stdout
    written = rows(tmp_path / "out" / "damaged.db", "SELECT note FROM fund_mail")
    assert len(written) >= 8
    if seed == 32:
        assert any("could not be read" in r["note"] for r in written), "noted on the row too"


@needs_pypff
def test_not_a_pst(tmp_path):
    fake = tmp_path / "mail.pst"
    fake.write_text("this is not a PST")
    result = pst(str(fake), "--target", str(tmp_path / "out"))
    assert result.returncode == 2 and "is not a PST or OST file" in result.stderr
    missing = pst(str(tmp_path / "nope.pst"), "--target", str(tmp_path))
    assert missing.returncode == 2 and "no such file" in missing.stderr


@needs_fixtures
@needs_pypff
def test_bad_codepage_and_timezone(tmp_path):
    assert pst(str(OUTLOOK), "--target", str(tmp_path), "--codepage", "klingon").returncode == 2
    assert pst(str(OUTLOOK), "--target", str(tmp_path), "--timezone", "KST").returncode == 2


@needs_fixtures
@needs_pypff
def test_codepage_reaches_libpff(tmp_path):
    from fund_mail.pst.importer import open_pst

    handle = open_pst(OUTLOOK, "cp949")
    try:
        assert handle.ascii_codepage in (b"cp949", "cp949")
    finally:
        handle.close()


# -- without libpff -----------------------------------------------------------------------------
def heap(properties: list[tuple[int, int, bytes | int]]) -> bytes:
    """A one-block property context, built the way MS-PST 2.3.1 lays it out."""
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
    values = pst_props.read_property_context(buffer, "cp949")
    assert pst_props.strip_subject_prefix(values[pst_props.PR_SUBJECT][1]) == "메시지 1"
    assert values[pst_props.PR_MESSAGE_FLAGS] == (0x03, 0x11)
    assert values[pst_props.PR_CLIENT_SUBMIT_TIME][1] == when
    assert values[pst_props.PR_BODY][1] is None
    assert values[pst_props.PR_SENDER_NAME][1] == "김"


@pytest.mark.parametrize("buffer", [b"", b"\x00" * 40, b"\x0c\x00\xec\xbc" + b"\xff" * 20])
def test_property_context_reader_refuses_other_bytes(buffer):
    with pytest.raises((pst_props.HeapError, struct.error)):
        pst_props.read_property_context(buffer)


def test_entry_ids_and_addresses():
    entry_id = b"\x00" * 4 + bytes(range(16)) + struct.pack("<I", 32962)
    assert pst_props.entry_node_id(entry_id) == 32962
    assert pst_props.entry_node_id(b"") is None
    assert pst_props.smtp_or_address("/O=FUND/OU=EXCHANGE/CN=RECIPIENTS/CN=KIM") == ""
    assert pst_props.smtp_or_address("kim@fund.example") == "kim@fund.example"


def test_body_decoding():
    assert _decode("이미 문자열", "cp949", None) == "이미 문자열"
    assert _decode("한글".encode(), "cp949", None) == "한글"
    assert _decode("한글".encode("cp949"), "cp949", None) == "한글"
    assert _decode("é".encode("cp1252") + b"\x00", "cp949", 1252) == "é"


def test_report_lists_every_problem():
    report = ImportReport(Path("x.db"))
    report.folders["Inbox"] = FolderTally(
        seen=3, written=2, attachments_expected=2, attachments_written=1
    )
    report.folders["Empty"] = FolderTally()
    report.problems.append(Problem("Inbox", "item 3", "unreadable: damaged block"))
    text = report.render()
    assert "<-- missing" in text and "(1 empty folders not shown)" in text
    assert "Inbox / item 3: unreadable: damaged block" in text
