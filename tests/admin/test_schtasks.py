"""The task XML against the Task Scheduler schema's element order, the real account name, and
the two logon types."""

import xml.etree.ElementTree as ET

import pytest

from fund_mail.admin import schtasks
from fund_mail.admin.schtasks import schtasks_command, task_xml
from tests.helpers import run_cli

NS = "{http://schemas.microsoft.com/windows/2004/02/mit/task}"
# From the Task Scheduler schema (MS-TSCH 2.5): "sequence" children must appear in this order;
# "all" children in any order, each at most once. Every element the template writes is listed.
SEQUENCE = {
    "TimeTrigger": ["Enabled", "StartBoundary", "EndBoundary", "Repetition",
                    "ExecutionTimeLimit", "RandomDelay"],
    "Principals": ["Principal"],
    "Triggers": ["TimeTrigger"],
    "Actions": ["Exec"],
}  # fmt: skip
ALL = {
    "Task": {"RegistrationInfo", "Triggers", "Settings", "Data", "Principals", "Actions"},
    "RegistrationInfo": {"URI", "SecurityDescriptor", "Source", "Date", "Author", "Version",
                         "Description", "Documentation"},
    "Principal": {"UserId", "LogonType", "GroupId", "DisplayName", "RunLevel",
                  "ProcessTokenSidType", "RequiredPrivileges"},
    "Repetition": {"Interval", "Duration", "StopAtDurationEnd"},
    "Settings": {"AllowStartOnDemand", "RestartOnFailure", "MultipleInstancesPolicy",
                 "DisallowStartIfOnBatteries", "StopIfGoingOnBatteries", "AllowHardTerminate",
                 "StartWhenAvailable", "NetworkProfileName", "RunOnlyIfNetworkAvailable",
                 "WakeToRun", "Enabled", "Hidden", "DeleteExpiredTaskAfter", "IdleSettings",
                 "NetworkSettings", "ExecutionTimeLimit", "Priority", "RunOnlyIfIdle",
                 "UseUnifiedSchedulingEngine", "DisallowStartOnRemoteAppSession"},
    "IdleSettings": {"Duration", "WaitTimeout", "StopOnIdleEnd", "RestartOnIdle"},
    "Exec": {"Command", "Arguments", "WorkingDirectory"},
}  # fmt: skip


def schema_problems(element: ET.Element) -> list[str]:
    name = element.tag.removeprefix(NS)
    children = [c.tag.removeprefix(NS) for c in element]
    problems = []
    if name in SEQUENCE:
        order = SEQUENCE[name]
        unknown = [c for c in children if c not in order]
        positions = [order.index(c) for c in children if c in order]
        if unknown or positions != sorted(positions):
            problems.append(f"{name}: {children} is not in the order {order}")
    elif name in ALL:
        if set(children) - ALL[name] or len(children) != len(set(children)):
            problems.append(f"{name}: {children} has unknown or repeated elements")
    elif children:
        problems.append(f"{name}: unexpected children {children}")
    for child in element:
        problems += schema_problems(child)
    return problems


@pytest.mark.parametrize("logon", ["password", "s4u"])
def test_xml_follows_the_schema_order(logon):
    root = ET.fromstring(task_xml("c:\\fund_mail", "CORP\\ops", logon).encode("utf-16"))
    assert schema_problems(root) == []


def test_the_checker_catches_a_misordered_trigger():
    bad = task_xml("c:\\fund_mail", "CORP\\ops").replace(
        "<Enabled>true</Enabled>\n      <StartBoundary>2025-01-01T00:00:00</StartBoundary>",
        "<StartBoundary>2025-01-01T00:00:00</StartBoundary>\n      <Enabled>true</Enabled>",
    )
    assert schema_problems(ET.fromstring(bad.encode("utf-16")))


def test_the_real_account_is_written(monkeypatch):
    monkeypatch.setenv("USERDOMAIN", "CORP")
    monkeypatch.setenv("USERNAME", "fundops")
    xml = task_xml("c:\\fund_mail")
    assert "<UserId>CORP\\fundops</UserId>" in xml and "%USER" not in xml
    assert '/RU "CORP\\fundops" /RP *' in schtasks_command("c:\\t.xml")


def test_s4u_stores_no_password():
    root = ET.fromstring(task_xml("c:\\fund_mail", "CORP\\ops", "s4u").encode("utf-16"))
    assert root.findtext(f"{NS}Principals/{NS}Principal/{NS}LogonType") == "S4U"
    command = schtasks_command("c:\\t.xml", "CORP\\ops", "s4u")
    assert "/RP" not in command and '/XML "c:\\t.xml"' in command


def test_cli_writes_utf16_with_bom_and_real_names(tmp_path):
    path = tmp_path / "task.xml"
    result = run_cli(
        "fund_mail_once", "--print-task-xml", str(path), "--task-logon", "s4u",
        env={"USERDOMAIN": "CORP", "USERNAME": "fundops"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = path.read_bytes()
    assert data[:2] == b"\xff\xfe"
    text = data.decode("utf-16")
    assert "<UserId>CORP\\fundops</UserId>" in text and "<LogonType>S4U</LogonType>" in text
    assert schema_problems(ET.parse(path).getroot()) == []
    assert "/RP" not in result.stdout


def test_without_windows_variables_the_user_still_has_a_domain(monkeypatch):
    monkeypatch.delenv("USERDOMAIN", raising=False)
    monkeypatch.delenv("USERNAME", raising=False)
    monkeypatch.setattr(schtasks.platform, "node", lambda: "pc01.corp.example")
    monkeypatch.setattr(schtasks.getpass, "getuser", lambda: "fundops")
    assert schtasks.current_user() == "pc01\\fundops"
