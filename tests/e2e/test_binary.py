"""The shipped artefact: the PyInstaller executables, built by make_exe.sh and make_one_day.sh,
run against the emulator and a real SFTP server exactly as Task Scheduler would run them."""

import os
import shutil
import subprocess
import time
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from fund_mail.emulator import file_attachment, reference_attachment
from tests.helpers import archived_rows, in_ci

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    *(p for p in ROOT.glob("src/fund_mail/**/*") if p.is_file() and "__pycache__" not in p.parts),
    ROOT / "pyproject.toml",
    ROOT / "uv.lock",
    ROOT / "make_exe.sh",
]


# The scheduled program is a PyInstaller folder (--onedir); the hand-run tools are one file.
BUILT = {
    "fund_mail_once": Path("fund_mail_once") / "fund_mail_once",
    "fund_mail_one_day": Path("fund_mail_one_day"),
    "fund_mail_pst": Path("fund_mail_pst"),
}


def _fresh(binary: Path) -> bool:
    return binary.is_file() and binary.stat().st_mtime > max(p.stat().st_mtime for p in SOURCES)


@pytest.fixture(scope="session")
def dist() -> Path:
    """Build the executables unless dist/ already holds ones newer than every source.

    In CI, .ci/run builds them before the tests; missing or stale ones there mean the build
    step is broken, and the tests fail instead of building around it.
    """
    builds = [
        ("fund_mail_once", ["make_exe.sh"]),
        ("fund_mail_one_day", ["make_one_day.sh"]),
        ("fund_mail_pst", ["make_exe.sh", "fund_mail_pst"]),
    ]
    for name, (script, *args) in builds:
        if not _fresh(ROOT / "dist" / BUILT[name]):
            if in_ci():
                pytest.fail(
                    f"dist/{BUILT[name]} is missing or older than the sources: .ci/run must "
                    f"build it with {' '.join([script, *args])} before the tests"
                )
            subprocess.run(
                ["bash", str(ROOT / script), *args],
                cwd=ROOT,
                check=True,
                timeout=1200,
                capture_output=True,
            )
    assert (ROOT / "dist" / ".env.sample").exists(), "the sample ships, never a real .env"
    assert not (ROOT / "dist" / ".env").exists()
    return ROOT / "dist"


@pytest.fixture
def install_dir(dist, tmp_path) -> Path:
    """A copy of the c:\\fund_mail layout (INSTALL.md): the contents of dist/fund_mail_once/
    (the program and _internal/), the one-file tools beside them, and .env next to them."""
    folder = tmp_path / "fund_mail"
    shutil.copytree(dist / "fund_mail_once", folder)
    for name in ("fund_mail_one_day", "fund_mail_pst"):
        shutil.copy2(dist / name, folder / name)
    assert sorted(p.name for p in folder.iterdir()) == [
        "_internal",
        "fund_mail_once",
        "fund_mail_one_day",
        "fund_mail_pst",
    ]
    return folder


def test_the_scheduled_program_is_one_process_with_nothing_to_unpack(install_dir, tmp_path):
    """--onedir: the program is the Python process itself (a one-file build starts a
    bootloader that unpacks into a _MEI folder and runs Python as its child)."""
    temp = tmp_path / "temp"
    temp.mkdir()
    probe = subprocess.Popen(
        [str(install_dir / "fund_mail_once"), "--demo"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "TMPDIR": str(temp), "TEMP": str(temp), "TMP": str(temp)},
    )
    children = Path(f"/proc/{probe.pid}/task/{probe.pid}/children")
    try:
        deadline = time.monotonic() + 60
        seen_children = ""
        while probe.poll() is None and time.monotonic() < deadline:
            seen_children = children.read_text() if children.exists() else ""
            if seen_children.strip():
                break
            time.sleep(0.02)
    finally:
        probe.kill()
        probe.wait()
    assert seen_children.strip() == "", "no child process"
    assert not list(temp.glob("_MEI*")), "nothing unpacked"


def run(binary: Path, *args: str) -> subprocess.CompletedProcess:
    # Started from another folder: the .env must be found next to the executable.
    return subprocess.run(
        [str(binary), *args], capture_output=True, text=True, timeout=300, cwd=binary.parent.parent
    )


@pytest.mark.parametrize("name", ["fund_mail_once", "fund_mail_one_day", "fund_mail_pst"])
def test_version_and_help(install_dir, name):
    version = run(install_dir / name, "--version")
    assert version.returncode == 0 and version.stdout.startswith(f"{name} ")
    usage = run(install_dir / name, "--help")
    assert usage.returncode == 0 and f"usage: {name}" in usage.stdout
    assert "Exit codes:" in usage.stdout


def test_binary_archives_and_delivers(install_dir, graph, sftp_server, data_dir, tmp_path, now):
    values = graph.env_values(data_dir, RETRY_BACKOFF="0.05")
    values.update(sftp_server.env(tmp_path / "known_hosts"))
    (install_dir / ".env").write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    graph.mailbox.add_message(now - timedelta(hours=1))

    baseline = run(install_dir / "fund_mail_once")
    assert baseline.returncode == 0, baseline.stderr
    assert "baseline recorded" in baseline.stdout

    graph.mailbox.add_message(
        now,
        subject="바이너리 테스트",
        attachments=[
            file_attachment("보고서.pdf", b"%PDF" * 100),
            reference_attachment("link.docx", "https://example.com/link.docx"),
        ],
    )
    second = run(install_dir / "fund_mail_once")
    assert second.returncode == 0, second.stderr
    assert "fund_mail_once: 1 messages, 1 attachments, 400 bytes" in second.stdout
    assert "delivered 1 DB(s) and 2 file(s)" in second.stdout
    rows = archived_rows(data_dir)
    assert [r["subject"] for r in rows] == ["바이너리 테스트"]
    assert "link-only attachment" in rows[0]["note"]
    landed = sorted(p.name for p in sftp_server.root.rglob("*") if p.is_file())
    assert landed.pop().startswith("manifest_"), "the day's manifest follows its files"
    assert len(landed) == 2 and landed[-1].startswith("fm_")

    status = run(install_dir / "fund_mail_once", "--status")
    assert status.returncode == 0 and "upload queue:      empty" in status.stdout


def test_one_day_binary(install_dir, graph, data_dir):
    seoul = ZoneInfo("Asia/Seoul")
    day = date(2025, 6, 30)
    graph.mailbox.add_message(datetime(2025, 6, 30, 12, tzinfo=seoul))
    (install_dir / ".env").write_text(
        "".join(f"{k}={v}\n" for k, v in graph.env_values(data_dir).items())
    )
    result = run(install_dir / "fund_mail_one_day", "--date", day.isoformat())
    assert result.returncode == 0, result.stderr
    assert "fund_mail_one_day 2025-06-30: 1 messages" in result.stdout


def test_binary_runs_the_demo(install_dir):
    demo = run(install_dir / "fund_mail_once", "--demo")
    assert demo.returncode == 0, demo.stderr
    assert "Run 2 (new mail arrived):" in demo.stdout and "Sent Items" in demo.stdout


def test_pst_binary_imports_the_fixtures(install_dir, tmp_path):
    from tests.pst.fixtures import fixture

    result = run(
        install_dir / "fund_mail_pst",
        str(fixture("Outlook.pst")),
        "--target",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    assert "total                                        14     11" in result.stdout
    # The embedded message with its own attachment: the bundled PST node reader is there.
    nested = run(
        install_dir / "fund_mail_pst",
        str(fixture("testPST.pst")),
        "--target",
        str(tmp_path / "out"),
    )
    assert nested.returncode == 0, nested.stderr
    assert "Every item and attachment was read." in nested.stdout


@pytest.fixture(scope="session")
def service_binary() -> Path:
    """dist/fund_mail_service/, a folder like fund_mail_once's: the frozen program starts its
    cycles as `fund_mail_service cycle`, a path only the built executable takes."""
    binary = ROOT / "dist" / "fund_mail_service" / "fund_mail_service"
    if not _fresh(binary):
        if in_ci():
            pytest.fail(
                "dist/fund_mail_service is missing or older than the sources: .ci/run must "
                "build it with make_exe.sh fund_mail_service before the tests"
            )
        subprocess.run(
            ["bash", str(ROOT / "make_exe.sh"), "fund_mail_service"],
            cwd=ROOT,
            check=True,
            timeout=1200,
            capture_output=True,
        )
    return binary


def test_service_binary_runs_cycles_and_stops_on_sigterm(service_binary, graph, data_dir, tmp_path):
    import signal
    import time

    folder = tmp_path / "fund_mail"
    shutil.copytree(service_binary.parent, folder)
    (folder / ".env").write_text(
        "".join(f"{k}={v}\n" for k, v in graph.env_values(data_dir).items())
    )
    process = subprocess.Popen(
        [str(folder / "fund_mail_service"), "run"],
        cwd=folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not (data_dir / "LAST_TIME.json").exists():
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "no cycle ran"
            time.sleep(0.1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    cycle_log = (data_dir / "logs" / "fund_mail_once.log").read_text(encoding="utf-8")
    assert "Baseline recorded" in cycle_log, "the frozen child ran fund_mail_once's cycle"
