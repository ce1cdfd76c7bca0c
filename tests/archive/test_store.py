"""Read-only SQLite URIs: every character a Windows folder name may hold stays in the path."""

import sqlite3

import pytest

from fund_mail.archive.store import open_readonly, readonly_uri


@pytest.mark.parametrize(
    ("path", "uri"),
    [
        ("c:\\fund mail\\data\\x.db", "file:///c:/fund%20mail/data/x.db?mode=ro"),
        ("C:/a#1/b?c/100%.db", "file:///C:/a%231/b%3Fc/100%25.db?mode=ro"),
        ("\\\\server\\share\\d#1\\x.db", "file:////server/share/d%231/x.db?mode=ro"),
        ("/srv/a b/#x?y%z.db", "file:///srv/a%20b/%23x%3Fy%25z.db?mode=ro"),
    ],
)
def test_uri_forms(path, uri):
    assert readonly_uri(path) == uri


def test_open_readonly_in_a_folder_with_uri_characters(tmp_path):
    folder = tmp_path / "a #1? 100% b"
    folder.mkdir()
    path = folder / "x.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (v)")
        conn.execute("INSERT INTO t VALUES (42)")
    conn.close()
    with open_readonly(path) as conn:
        assert conn.execute("SELECT v FROM t").fetchall() == [(42,)]
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    assert sorted(p.name for p in folder.iterdir()) == ["x.db"], "nothing created beside it"
