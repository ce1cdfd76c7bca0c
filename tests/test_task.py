"""The Task Scheduler XML is well-formed and carries the settings the operator relies on."""

import xml.etree.ElementTree as ET

from fund_mail.admin.schtasks import schtasks_command, task_xml, write_task_xml
from tests.helpers import run_cli

NS = {"t": "http://schemas.microsoft.com/windows/2004/02/mit/task"}


def parse(text: str) -> ET.Element:
    # ElementTree refuses a str that declares an encoding; the declaration is for the file form.
    return ET.fromstring(text.encode("utf-16"))


def test_task_settings():
    root = parse(task_xml("c:\\fund_mail", "CORP\\ops"))
    assert root.tag == f"{{{NS['t']}}}Task"
    assert (
        root.findtext("t:Triggers/t:TimeTrigger/t:Repetition/t:Interval", namespaces=NS) == "PT5M"
    )
    assert root.findtext("t:Triggers/t:TimeTrigger/t:Enabled", namespaces=NS) == "true"
    # "Run whether user is logged on or not": no interactive session, so no console window.
    assert root.findtext("t:Principals/t:Principal/t:LogonType", namespaces=NS) == "Password"
    assert root.findtext("t:Principals/t:Principal/t:UserId", namespaces=NS) == "CORP\\ops"
    assert root.findtext("t:Settings/t:MultipleInstancesPolicy", namespaces=NS) == "IgnoreNew"
    assert root.findtext("t:Settings/t:Hidden", namespaces=NS) == "false"
    exec_ = root.find("t:Actions/t:Exec", NS)
    assert exec_.findtext("t:Command", namespaces=NS) == "c:\\fund_mail\\fund_mail_once.exe"
    assert exec_.findtext("t:WorkingDirectory", namespaces=NS) == "c:\\fund_mail"


def test_other_install_folder_and_escaping():
    root = parse(task_xml("D:\\Apps & Tools\\fund_mail\\", "a<b"))
    exec_ = root.find("t:Actions/t:Exec", NS)
    assert (
        exec_.findtext("t:Command", namespaces=NS)
        == "D:\\Apps & Tools\\fund_mail\\fund_mail_once.exe"
    )
    assert root.findtext("t:Principals/t:Principal/t:UserId", namespaces=NS) == "a<b"


def test_written_file_is_utf16_with_bom(tmp_path):
    path = tmp_path / "task.xml"
    write_task_xml(str(path), "c:\\fund_mail", "CORP\\ops")
    data = path.read_bytes()
    assert data[:2] in (b"\xff\xfe", b"\xfe\xff")
    assert (
        ET.parse(path).getroot().findtext("t:Settings/t:MultipleInstancesPolicy", namespaces=NS)
        == "IgnoreNew"
    )


def test_schtasks_command_imports_the_xml_and_asks_for_the_password():
    command = schtasks_command("c:\\fund_mail\\task.xml", "CORP\\ops")
    assert command == (
        'schtasks /Create /TN "fund_mail_once" /XML "c:\\fund_mail\\task.xml" '
        '/RU "CORP\\ops" /RP * /F'
    )


def test_cli_prints_xml_and_the_command(tmp_path):
    printed = run_cli("fund_mail_once", "--print-task-xml")
    assert printed.returncode == 0
    assert (
        parse(printed.stdout).findtext("t:Settings/t:MultipleInstancesPolicy", namespaces=NS)
        == "IgnoreNew"
    )
    assert "schtasks /Create" in printed.stderr
    written = run_cli(
        "fund_mail_once", "--print-task-xml", str(tmp_path / "t.xml"), "--install-dir", "e:\\fm"
    )
    assert written.returncode == 0 and "schtasks /Create" in written.stdout
    root = ET.parse(tmp_path / "t.xml").getroot()
    assert root.findtext("t:Actions/t:Exec/t:WorkingDirectory", namespaces=NS) == "e:\\fm"
