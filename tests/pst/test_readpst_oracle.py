"""The importer against an independent reader: Debian's readpst (pst-utils), on every fixture.

Compared: mail items per folder, attachment names and sizes (an embedded message's own
attachments included), sender addresses. readpst is installed by .ci/run; a missing readpst
fails in CI and skips on a developer machine.

Known, deliberate differences (the only ones tolerated):
1. readpst writes appointments, contacts and distribution lists too; fund_mail archives mail,
   meeting requests and reports only, like the live path. Its VCARD/VCALENDAR files are left
   out of the comparison.
2. readpst adds a synthetic `rtf-body.rtf` attachment when a message has an RTF body; it is not
   an attachment of the message and is left out.
3. readpst inlines an embedded message as a message/rfc822 part; fund_mail saves it as its own
   `.eml` attachment row. Both count as one attachment, and the embedded message's own
   attachments are compared by name and bytes.
4. readpst writes `MAILER-DAEMON` when an Exchange sender has no SMTP property; fund_mail
   resolves the SMTP address from the send account (or keeps the EX DN, noted). There the
   importer's address must be a real SMTP address, and readpst's is MAILER-DAEMON.
5. readpst names the store's top folder after the store (`Outlook/`, `hong-thai.nguyen/`);
   fund_mail's paths are relative to the mailbox top, so that folder is `""`.
"""

import email
import email.policy
import os
import re
import shutil
import sqlite3
import subprocess
from collections import Counter
from email.message import EmailMessage
from pathlib import Path

import pytest

from tests.helpers import run_cli
from tests.pst.fixtures import FILES, fixture

SYNTHETIC = {"rtf-body.rtf"}
NOT_MAIL = (b"BEGIN:VCARD", b"BEGIN:VCALENDAR")
EX_WITHOUT_SMTP = "MAILER-DAEMON"


def readpst() -> str:
    found = shutil.which("readpst")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("readpst is missing: .ci/run installs it with apt-get (pst-utils)")
        pytest.skip("readpst is not installed (apt-get install pst-utils)")
    return found


def attachment_key(name: str, data: bytes) -> tuple[str, int]:
    return name, len(data)


def eml_attachments(message: EmailMessage) -> list:
    """[(name, size)] of file attachments, and ("message", [...]) for each embedded message."""
    found: list = []
    for part in message.iter_attachments():
        if part.get_content_type() == "message/rfc822":
            inner = part.get_payload()[0]
            found.append(("message", sorted(eml_attachments(inner), key=repr)))
        else:
            name = part.get_filename() or ""
            if name not in SYNTHETIC:
                found.append(attachment_key(name, part.get_payload(decode=True) or b""))
    return found


def oracle(pst: Path, out: Path) -> dict[tuple[str, str], list[dict]]:
    """{(folder, subject): [{sender, attachments}]} as readpst sees the mail."""
    out.mkdir(parents=True)
    # -j 0: one process. By default readpst -S forks a child per mail, and the child's reopening
    # of the PST moves the file offset it shares with the parent: under load the parent reads a
    # block at a wrong offset and silently skips (or garbles) a mail, while exiting 0.
    subprocess.run([readpst(), "-j", "0", "-S", "-D", "-q", "-o", str(out), str(pst)], check=True)
    (store,) = [d for d in out.iterdir() if d.is_dir()]
    mails: dict[tuple[str, str], list[dict]] = {}
    for path in sorted(store.rglob("*")):
        if not path.is_file() or not path.name.isdigit():
            continue
        raw = path.read_bytes()
        if raw.lstrip().startswith(NOT_MAIL):
            continue  # difference 1
        # readpst starts an inlined message with an mbox "From " line, which is not a header.
        raw = re.sub(rb"(message/rfc822\r?\n\r?\n)>From [^\n]*\n", rb"\1", raw)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        folder = path.parent.relative_to(store).as_posix()
        folder = "" if folder == "." else folder  # difference 5
        files = [
            attachment_key(f.name.split("-", 1)[1], f.read_bytes())
            for f in path.parent.glob(f"{path.name}-*")
            if f.name.split("-", 1)[1] not in SYNTHETIC  # difference 2
        ]
        sender = email.utils.parseaddr(str(message["From"] or ""))[1]
        mails.setdefault((folder, str(message["Subject"] or "")), []).append(
            {"sender": sender, "attachments": sorted(files + eml_attachments(message), key=repr)}
        )
    return mails


def imported(pst: Path, out: Path) -> dict[tuple[str, str], list[dict]]:
    result = run_cli("fund_mail_pst", str(pst), "--target", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    db = out / f"{pst.stem}.db"
    mails: dict[tuple[str, str], list[dict]] = {}
    with sqlite3.connect(db) as conn:
        for row_id, folder, subject, sender in conn.execute(
            "SELECT id, folder_path, subject, sender_address FROM fund_mail"
        ):
            attachments: list = []
            for save_folder, phy, name, size in conn.execute(
                "SELECT save_folder, phy_file_name, org_file_name, file_size "
                "FROM fund_mail_attach WHERE parent_id = ?",
                (row_id,),
            ):
                data = (out / save_folder / phy).read_bytes()
                assert len(data) == size
                if phy.endswith(".eml"):  # difference 3
                    inner = email.message_from_bytes(data, policy=email.policy.default)
                    attachments.append(("message", sorted(eml_attachments(inner), key=repr)))
                else:
                    attachments.append(attachment_key(name, data))
            mails.setdefault((folder, subject), []).append(
                {"sender": sender, "attachments": sorted(attachments, key=repr)}
            )
    return mails


@pytest.mark.parametrize("name", FILES)
def test_importer_agrees_with_readpst(tmp_path, name):
    pst = fixture(name)
    theirs = oracle(pst, tmp_path / "readpst")
    ours = imported(pst, tmp_path / "fund_mail")
    per_folder = Counter(folder for (folder, _), mails in ours.items() for _ in mails)
    assert per_folder == Counter(folder for (folder, _), mails in theirs.items() for _ in mails), (
        f"only fund_mail: {sorted(ours.keys() - theirs.keys())}; "
        f"only readpst: {sorted(theirs.keys() - ours.keys())}; readpst wrote "
        f"{sorted(p.relative_to(tmp_path).as_posix() for p in (tmp_path / 'readpst').rglob('*'))}"
    )
    assert ours.keys() == theirs.keys()
    for key, their_mails in theirs.items():
        our_mails = ours[key]
        assert sorted(m["attachments"] for m in our_mails) == sorted(
            m["attachments"] for m in their_mails
        ), key
        for mine, theirs_one in zip(
            sorted(our_mails, key=repr), sorted(their_mails, key=repr), strict=True
        ):
            if theirs_one["sender"] == EX_WITHOUT_SMTP:  # difference 4
                assert "@" in mine["sender"] and not mine["sender"].upper().startswith("/O=")
            else:
                assert mine["sender"].lower() == theirs_one["sender"].lower(), key
