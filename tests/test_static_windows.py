"""The source type-checks as Windows sees it (msvcrt locks, Windows-only branches), as CI does."""

import subprocess

from tests.helpers import BIN, ROOT


def test_pyright_for_windows_finds_nothing():
    result = subprocess.run(
        [str(BIN / "pyright"), "--pythonplatform", "Windows", "src"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert "0 errors" in result.stdout
