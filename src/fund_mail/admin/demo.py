"""`fund_mail_once --demo`: the real pipeline against the emulator, in a temporary DATA_DIR."""

from __future__ import annotations

import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fund_mail.archive.store import messages_with_files
from fund_mail.config import config_from_values
from fund_mail.emulator import (
    GraphEmulator,
    file_attachment,
    inner_message,
    item_attachment,
    reference_attachment,
)
from fund_mail.engine import run_audit, run_once

PDF = b"%PDF-1.4\n% fund_mail demo\n" + b"0" * 2048
XLSX = b"PK\x03\x04 demo spreadsheet " + b"1" * 4096
PARTNER = ("Kim Minjun", "minjun.kim@partner-am.example")
TRUSTEE = ("Trustee Desk", "desk@trustee-bank.example")


def seed_history(graph: GraphEmulator, now: datetime) -> None:
    mailbox = graph.mailbox
    funds = mailbox.add_folder("Funds", parent="inbox")
    mailbox.add_folder("2025", parent=funds.id)
    mailbox.add_message(
        now - timedelta(hours=3),
        subject="주간 운용 보고서 (지난주)",
        from_=PARTNER,
        attachments=[file_attachment("주간보고.pdf", PDF)],
    )
    mailbox.add_message(
        now - timedelta(hours=2),
        folder="Inbox/Funds",
        subject="NAV confirmation for last week",
        from_=TRUSTEE,
    )


def seed_new_mail(graph: GraphEmulator, now: datetime) -> None:
    mailbox, me = graph.mailbox, ("Fund Ops", graph.mailbox.address)
    mailbox.add_message(
        now - timedelta(minutes=4),
        folder="Inbox/Funds",
        subject="11월 기준가 확인 요청",
        from_=PARTNER,
        cc=[TRUSTEE],
        body_html="<p>안녕하세요, 11월 기준가 확인 부탁드립니다.</p>",
        attachments=[
            file_attachment("기준가_2025-11.xlsx", XLSX),
            file_attachment("logo.png", b"\x89PNG demo", "image/png", is_inline=True),
        ],
    )
    mailbox.add_message(
        now - timedelta(minutes=3),
        folder="Inbox/Funds/2025",
        subject="FW: Subscription agreement",
        from_=TRUSTEE,
        attachments=[
            item_attachment(
                "Subscription agreement",
                inner_message("Subscription agreement", PARTNER, "<p>Signed copy attached.</p>"),
            )
        ],
    )
    mailbox.add_message(
        now - timedelta(minutes=2),
        subject="Q3 investor letter (shared link)",
        from_=PARTNER,
        attachments=[
            reference_attachment("Q3 letter.docx", "https://contoso.sharepoint.com/q3.docx")
        ],
    )
    mailbox.add_message(
        now - timedelta(minutes=1),
        folder="sentitems",
        from_=me,
        to=[PARTNER],
        subject="Re: 11월 기준가 확인 요청",
        body_html="<p>확인했습니다. 감사합니다.</p>",
    )
    mailbox.add_message(
        now, folder="drafts", from_=me, is_draft=True, subject="(draft: never archived)"
    )


def print_archive(db_path: Path, data_dir: Path) -> None:
    rows = messages_with_files(db_path)
    print(f"\nArchived into {db_path}:")
    for kst, kind, folder, subject, note, files in rows:
        print(f"  {kst} KST  {kind:<7}  {folder:<16}  {subject}")
        if files:
            print(f"      attachments: {files}")
        if note:
            print(f"      note: {note}")
    print(f"\nEverything is under {data_dir} (cursor in LAST_TIME.json).")


def run_demo() -> int:
    workdir = Path(tempfile.mkdtemp(prefix="fund_mail_demo_"))
    data_dir = workdir / "data"
    with GraphEmulator(tls_dir=workdir / "emulator-tls") as graph:
        # The emulator's throwaway CA is the one the sessions trust.
        values = graph.env_values(data_dir, REQUESTS_CA_BUNDLE=str(graph.tls.ca_cert))
        config = config_from_values(values, source="demo")
        now = datetime.now(UTC).replace(microsecond=0)
        print(f"Graph emulator at {graph.url}, mailbox {graph.mailbox.address}")
        # History from two days ago: before the baseline, so never archived, and never on the
        # same local day as the restored message below.
        seed_history(graph, now - timedelta(days=2))

        first = run_once(config)
        print("Run 1 (first run: baseline, nothing archived):")
        print(f"  {first.summary('fund_mail_once')}")

        seed_new_mail(graph, now)
        second = run_once(config)
        print("Run 2 (new mail arrived):")
        print(f"  {second.summary('fund_mail_once')}")
        print(
            f"  Graph requests: {second.requests} "
            f"(list pages, folder look-ups and attachment downloads)"
        )
        if second.db_path:
            print_archive(second.db_path, data_dir)

        # Restored from Deleted Items with its old date: older than any overlap window.
        # Two hours old: far outside the 30-minute overlap whatever the time of day.
        restored_at = now - timedelta(hours=2)
        graph.mailbox.add_message(
            restored_at,
            subject="Restored: 운용사 계약서 (old date)",
            from_=PARTNER,
            attachments=[file_attachment("계약서.pdf", PDF)],
        )
        third = run_once(config)
        print("\nRun 3 (a message restored with an old date; no run can see it):")
        print(f"  {third.summary('fund_mail_once')}")
        day = restored_at.astimezone(config.tz).date()
        print(f"fund_mail_one_day --audit --date {day} (repairs what is missing):")
        for audit in run_audit(config, [day]).audits:
            print(f"  {audit.line()}")
        print(f"fund_mail_one_day --audit --date {day} (again):")
        for audit in run_audit(config, [day]).audits:
            print(f"  {audit.line()}")
        print("\nUploads are off in the demo (HOST is empty); see README 'SFTP delivery'.")
    return 0
