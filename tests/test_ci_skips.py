"""In CI a skip fails the run, unless tests/conftest.py allows it with a reason."""

import ast
from pathlib import Path

import pytest

from tests import conftest

INNER = """
import pytest

needs_nothing = pytest.mark.skipif(True, reason="a tool is missing")

@needs_nothing
def test_skipped_by_a_mark():
    pass

def test_skipped_inside():
    pytest.skip("fixtures not found")

@pytest.mark.parametrize("n", [1, 2])
def test_allowed(n):
    pytest.skip("needs a non-root user")

def test_passes():
    assert True

@pytest.mark.xfail(reason="a known bug", strict=True)
def test_expected_to_fail():
    assert False
"""


@pytest.fixture
def inner(pytester, monkeypatch):
    pytester.makeconftest(
        "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n"
    )
    pytester.makepyfile(test_inner=INNER)
    monkeypatch.setitem(
        conftest.ALLOWED_SKIPS_IN_CI, "test_inner.py::test_allowed", "needs a non-root user"
    )
    return pytester


def test_outside_ci_a_skip_is_a_skip(inner, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    inner.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1, skipped=4, xfailed=1)


def test_in_ci_a_skip_fails_unless_allowed(inner, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = inner.runpytest("-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1, skipped=2, errors=1, failed=1, xfailed=1)
    result.stdout.fnmatch_lines(["*Skipped in CI (a tool is missing)*ALLOWED_SKIPS_IN_CI*"])
    result.stdout.fnmatch_lines(["*Skipped in CI (fixtures not found)*"])


def test_in_ci_a_module_skipped_at_import_fails(pytester, monkeypatch):
    pytester.makeconftest("from tests.conftest import pytest_make_collect_report\n")
    pytester.makepyfile(
        test_module="import pytest\npytest.importorskip('no_such_module_x')\n"
        "def test_x():\n    pass\n"
    )
    monkeypatch.setenv("CI", "true")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*Skipped in CI*no_such_module_x*"])


def test_every_allowed_skip_names_a_test_that_exists_and_says_why():
    root = Path(__file__).resolve().parents[1]
    for node, reason in conftest.ALLOWED_SKIPS_IN_CI.items():
        path, name = node.split("::")
        tree = ast.parse((root / path).read_text("utf-8"))
        names = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        assert name in names, node
        assert len(reason) > 20, f"{node}: say why it cannot run in CI"
