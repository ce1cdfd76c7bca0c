"""fund_mail_pst on the PST fixtures (read where tests/pst/fixtures.py finds them, never copied
into the repository), plus the parts that need no fixture."""

import random
import sqlite3
from pathlib import Path
from zoneinfo import ZoneInfo

import pypff  # noqa: F401 - a missing libpff must fail these tests, not skip them
import pytest

from fund_mail.pst.importer import _decode
from fund_mail.pst.report import ALL_READ, FolderTally, ImportReport, Problem
from tests.helpers import run_cli
from tests.pst.fixtures import fixture
from tests.test_store import assert_pst_utils_schema

SEOUL = ZoneInfo("Asia/Seoul")


def rows(db: Path, sql: str) -> list[dict]:
    with sqlite3.connect(db) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(r) for r in conn.execute(sql)]


def pst(*args: str):
    return run_cli("fund_mail_pst", *args)


# -- with libpff and the fixtures ---------------------------------------------------------------
def test_outlook_pst_import(tmp_path):
    result = pst(str(fixture("Outlook.pst")), "--target", str(tmp_path))
    assert result.returncode == 0, result.stderr
    db = tmp_path / "Outlook.db"
    assert_pst_utils_schema(db)
    mails = rows(db, "SELECT * FROM fund_mail ORDER BY id")
    assert len(mails) == 11
    by_folder = {(m["folder_path"], m["msg_kind"], m["note"]) for m in mails}
    # The Inbox mails were sent by the store owner to himself: sent, as the live path rules.
    assert by_folder == {
        ("Inbox", "sent", "sent: the sender saqib.razzaq@xp.local is the store owner"),
        ("Sent Items", "sent", "sent: in the store's Sent Items folder"),
    }
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
    assert "This is first message" in eml, "the body of the embedded message is kept"
    report = result.stdout
    assert "Inbox" in report and "17/17" in report and "total" in report
    assert (
        "Skipped (not mail, or drafts): IPM.Appointment 1, IPM.Contact 1, "
        "IPM.Microsoft.ScheduleData.FreeBusy 1" in report
    )
    assert "Archived: IPM.Note 11" in report
    assert ALL_READ in report


def test_import_resumes_without_duplicates(tmp_path):
    assert pst(str(fixture("Outlook.pst")), "--target", str(tmp_path)).returncode == 0
    db = tmp_path / "Outlook.db"
    with sqlite3.connect(db) as conn:  # as if the last batch had not been committed
        conn.execute("DELETE FROM fund_mail_attach WHERE parent_id > 8")
        conn.execute("DELETE FROM fund_mail WHERE id > 8")
    again = pst(str(fixture("Outlook.pst")), "--target", str(tmp_path))
    assert again.returncode == 0, again.stderr
    ids = [r["email_id"] for r in rows(db, "SELECT email_id FROM fund_mail")]
    assert len(ids) == 11 == len(set(ids))
    assert "total                                        14      3      8" in again.stdout
    third = pst(str(fixture("Outlook.pst")), "--target", str(tmp_path))
    assert "total                                        14      0     11" in third.stdout
    assert len(rows(db, "SELECT id FROM fund_mail_attach")) == 34


def test_pst_without_mail_counts_and_skips_everything(tmp_path):
    result = pst(str(fixture("dist-list.pst")), "--target", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert rows(tmp_path / "dist-list.db", "SELECT id FROM fund_mail") == []
    assert "IPM.Appointment 1" in result.stdout and "IPM.DistList 1" in result.stdout
    assert "IPM.Contact 1" in result.stdout


@pytest.mark.parametrize("seed", [4, 10, 32])
def test_corrupted_items_are_survived_and_listed(tmp_path, seed):
    """Flip bytes in a copy (in tmp_path) of the fixture: a damaged folder, item or attachment
    is listed with its reason; everything else is imported."""
    data = bytearray(fixture("Outlook.pst").read_bytes())
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


def test_not_a_pst(tmp_path):
    fake = tmp_path / "mail.pst"
    fake.write_text("this is not a PST")
    result = pst(str(fake), "--target", str(tmp_path / "out"))
    assert result.returncode == 2 and "is not a PST or OST file" in result.stderr
    missing = pst(str(tmp_path / "nope.pst"), "--target", str(tmp_path))
    assert missing.returncode == 2 and "no such file" in missing.stderr


def test_bad_codepage_and_timezone(tmp_path):
    assert (
        pst(
            str(fixture("Outlook.pst")), "--target", str(tmp_path), "--codepage", "klingon"
        ).returncode
        == 2
    )
    assert (
        pst(str(fixture("Outlook.pst")), "--target", str(tmp_path), "--timezone", "KST").returncode
        == 2
    )


def test_codepage_reaches_libpff(tmp_path):
    from fund_mail.pst.importer import open_pst

    handle = open_pst(fixture("Outlook.pst"), "cp949")
    try:
        assert handle.ascii_codepage in (b"cp949", "cp949")
    finally:
        handle.close()


# -- without a fixture --------------------------------------------------------------------------
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
    assert ALL_READ not in text and "NOT everything was read" in text


def test_report_never_says_all_read_when_an_attachment_is_missing():
    report = ImportReport(Path("x.db"))
    report.folders["Inbox"] = FolderTally(
        seen=1, written=1, attachments_expected=2, attachments_written=1
    )
    assert ALL_READ not in report.render()
    report.folders["Inbox"].attachments_written = 2
    assert ALL_READ in report.render()
