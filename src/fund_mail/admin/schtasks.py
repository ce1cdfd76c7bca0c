"""Windows Task Scheduler: the XML that runs fund_mail_once every 5 minutes, and its import."""

from __future__ import annotations

import getpass
import os
import platform
from xml.sax.saxutils import escape

TASK_NAME = "fund_mail_once"

TEMPLATE = """<?xml version="1.0" encoding="UTF-16"?>
<Task version="1.2" xmlns="http://schemas.microsoft.com/windows/2004/02/mit/task">
  <RegistrationInfo>
    <Description>fund_mail: archive the mailbox every 5 minutes and deliver it over SFTP</Description>
    <URI>\\{name}</URI>
  </RegistrationInfo>
  <Triggers>
    <TimeTrigger>
      <Enabled>true</Enabled>
      <StartBoundary>2025-01-01T00:00:00</StartBoundary>
      <Repetition>
        <Interval>PT5M</Interval>
        <StopAtDurationEnd>false</StopAtDurationEnd>
      </Repetition>
    </TimeTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{user}</UserId>
      <LogonType>{logon}</LogonType>
      <RunLevel>LeastPrivilege</RunLevel>
    </Principal>
  </Principals>
  <Settings>
    <MultipleInstancesPolicy>IgnoreNew</MultipleInstancesPolicy>
    <DisallowStartIfOnBatteries>false</DisallowStartIfOnBatteries>
    <StopIfGoingOnBatteries>false</StopIfGoingOnBatteries>
    <AllowHardTerminate>true</AllowHardTerminate>
    <StartWhenAvailable>true</StartWhenAvailable>
    <RunOnlyIfNetworkAvailable>false</RunOnlyIfNetworkAvailable>
    <IdleSettings>
      <StopOnIdleEnd>false</StopOnIdleEnd>
      <RestartOnIdle>false</RestartOnIdle>
    </IdleSettings>
    <AllowStartOnDemand>true</AllowStartOnDemand>
    <Enabled>true</Enabled>
    <Hidden>false</Hidden>
    <RunOnlyIfIdle>false</RunOnlyIfIdle>
    <WakeToRun>false</WakeToRun>
    <ExecutionTimeLimit>PT1H</ExecutionTimeLimit>
    <Priority>7</Priority>
  </Settings>
  <Actions Context="Author">
    <Exec>
      <Command>{command}</Command>
      <Arguments>--quiet</Arguments>
      <WorkingDirectory>{folder}</WorkingDirectory>
    </Exec>
  </Actions>
</Task>
"""


# Both are "run whether user is logged on or not": a non-interactive session, no console window.
# Password stores the account's password with the task; S4U stores none, but the task then has
# no network credentials (fine for HTTPS and SFTP, not for a DATA_DIR on a network share).
LOGON_TYPES = {"password": "Password", "s4u": "S4U"}


def current_user() -> str:
    """DOMAIN\\user of the account running this, as Task Scheduler wants it. schtasks /XML
    does not expand %USERDOMAIN%\\%USERNAME%, so the real names are written."""
    user = os.environ.get("USERNAME") or getpass.getuser()
    domain = os.environ.get("USERDOMAIN") or platform.node().split(".")[0]
    return f"{domain}\\{user}" if domain else user


def task_xml(folder: str = "c:\\fund_mail", user: str = "", logon: str = "password") -> str:
    """IgnoreNew skips a start while the previous run is still busy; ExecutionTimeLimit stops a
    run that hangs for an hour. Elements keep the order the Task Scheduler schema requires."""
    folder = folder.rstrip("\\/")
    return TEMPLATE.format(
        name=TASK_NAME,
        user=escape(user or current_user()),
        logon=LOGON_TYPES[logon],
        command=escape(f"{folder}\\fund_mail_once.exe"),
        folder=escape(folder),
    )


def schtasks_command(xml_path: str, user: str = "", logon: str = "password") -> str:
    """Password: /RP * makes schtasks ask for the account's password, which the task needs to
    run while nobody is logged on. S4U: the XML names the account and no password is asked."""
    if logon == "s4u":
        return f'schtasks /Create /TN "{TASK_NAME}" /XML "{xml_path}" /F'
    user = user or current_user()
    return f'schtasks /Create /TN "{TASK_NAME}" /XML "{xml_path}" /RU "{user}" /RP * /F'


def write_task_xml(path: str, folder: str, user: str = "", logon: str = "password") -> None:
    """UTF-16 with a byte order mark: the encoding Task Scheduler exports and schtasks reads."""
    with open(path, "w", encoding="utf-16") as out:
        out.write(task_xml(folder, user, logon))
