"""The archive DB matches the pst-utils reference schema exactly."""

import sqlite3

from fund_mail.archive.rows import MAIL_COLUMNS, AttachRow, MailRow
from fund_mail.archive.store import SCHEMA_SQL, ArchiveDb

# (name, declared type, not null, default, pk) exactly as SCHEMA.md lists them.
FUND_MAIL = [
    ("id", "INTEGER", 0, None, 1), ("email_id", "TEXT", 0, None, 0),
    ("subject", "TEXT", 0, None, 0), ("sender_address", "TEXT", 0, None, 0),
    ("sender_name", "TEXT", 0, None, 0), ("from_address", "TEXT", 0, None, 0),
    ("from_name", "TEXT", 0, None, 0), ("to_recipients", "TEXT", 0, None, 0),
    ("cc_recipients", "TEXT", 0, None, 0), ("email_time", "TEXT", 0, None, 0),
    ("kst_time", "TEXT", 0, None, 0), ("content", "TEXT", 0, None, 0),
    ("msg_kind", "TEXT", 0, None, 0), ("folder_path", "TEXT", 0, None, 0),
    ("note", "TEXT", 0, "''", 0),
]  # fmt: skip
FUND_MAIL_ATTACH = [
    ("id", "INTEGER", 0, None, 1), ("parent_id", "INTEGER", 0, None, 0),
    ("email_id", "TEXT", 0, None, 0), ("save_folder", "TEXT", 0, None, 0),
    ("org_file_name", "TEXT", 0, None, 0), ("phy_file_name", "TEXT", 0, None, 0),
    ("file_size", "INTEGER", 0, "0", 0),
]  # fmt: skip


def schema_of(path):
    with sqlite3.connect(path) as conn:
        tables = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        info = {t: [tuple(r[1:]) for r in conn.execute(f"PRAGMA table_info({t})")] for t in tables}
        fks = conn.execute("PRAGMA foreign_key_list(fund_mail_attach)").fetchall()
    return tables, info, fks


def assert_pst_utils_schema(path):
    tables, info, fks = schema_of(path)
    assert tables == ["fund_mail", "fund_mail_attach"]
    assert info["fund_mail"] == FUND_MAIL
    assert info["fund_mail_attach"] == FUND_MAIL_ATTACH
    assert [(f[2], f[3], f[4], f[6]) for f in fks] == [("fund_mail", "parent_id", "id", "CASCADE")]


def test_reference_ddl_has_autoincrement_keys():
    assert SCHEMA_SQL.count("INTEGER PRIMARY KEY AUTOINCREMENT") == 2


def test_archive_db_schema_and_rows(tmp_path):
    db = ArchiveDb(tmp_path / "x.db")
    row = MailRow(*(f"v-{c}" for c in MAIL_COLUMNS))
    parent = db.add(
        row,
        [AttachRow("2025_06_30/attach", "a.pdf", "abc.pdf", 3)],
    )
    db.finish()
    assert_pst_utils_schema(tmp_path / "x.db")
    with sqlite3.connect(tmp_path / "x.db") as conn:
        assert conn.execute("SELECT email_id, note FROM fund_mail").fetchall() == [
            ("v-email_id", "v-note")
        ]
        assert conn.execute(
            "SELECT parent_id, email_id, file_size FROM fund_mail_attach"
        ).fetchall() == [(parent, "v-email_id", 3)]
    assert not (tmp_path / "x.db-journal").exists()


def test_discarded_db_leaves_nothing(tmp_path):
    db = ArchiveDb(tmp_path / "y.db")
    db.discard()
    assert list(tmp_path.iterdir()) == []


def test_add_many_writes_what_add_writes_one_by_one(tmp_path):
    def message(n: int) -> tuple[MailRow, list[AttachRow]]:
        row = MailRow(*(f"{c}-{n}" for c in MAIL_COLUMNS))
        return row, [AttachRow("d/attach", f"{n}-{k}", f"{n}{k}", k) for k in range(n % 3)]

    batches = [[message(n) for n in range(5)], [message(n) for n in range(5, 9)]]
    one_by_one, together = ArchiveDb(tmp_path / "a.db"), ArchiveDb(tmp_path / "b.db")
    for batch in batches:
        for row, files in batch:
            one_by_one.add(row, files)
        together.add_many(batch)
    assert (together.messages, together.attachments) == (9, 9)
    one_by_one.finish()
    together.finish()
    dumps = []
    for name in ("a.db", "b.db"):
        with sqlite3.connect(tmp_path / name) as conn:
            dumps.append(
                [
                    conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
                    for table in ("fund_mail", "fund_mail_attach", "sqlite_sequence")
                ]
            )
    assert dumps[0] == dumps[1]
