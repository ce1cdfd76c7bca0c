"""Windows Task Scheduler: the XML that runs fund_mail_once every 5 minutes, and its import."""

from __future__ import annotations

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
      <StartBoundary>2025-01-01T00:00:00</StartBoundary>
      <Enabled>true</Enabled>
      <Repetition>
        <Interval>PT5M</Interval>
        <StopAtDurationEnd>false</StopAtDurationEnd>
      </Repetition>
    </TimeTrigger>
  </Triggers>
  <Principals>
    <Principal id="Author">
      <UserId>{user}</UserId>
      <LogonType>Password</LogonType>
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


def task_xml(folder: str = "c:\\fund_mail", user: str = "%USERDOMAIN%\\%USERNAME%") -> str:
    """LogonType Password is "run whether user is logged on or not": the task runs in a
    non-interactive session, so no console window appears. IgnoreNew skips a start while the
    previous run is still busy; ExecutionTimeLimit stops a run that hangs for an hour."""
    folder = folder.rstrip("\\/")
    return TEMPLATE.format(
        name=TASK_NAME,
        user=escape(user),
        command=escape(f"{folder}\\fund_mail_once.exe"),
        folder=escape(folder),
    )


def schtasks_command(xml_path: str, user: str = "%USERDOMAIN%\\%USERNAME%") -> str:
    """/RP * makes schtasks ask for the account's password, which the task needs to run while
    nobody is logged on."""
    return f'schtasks /Create /TN "{TASK_NAME}" /XML "{xml_path}" /RU "{user}" /RP * /F'


def write_task_xml(path: str, folder: str, user: str) -> None:
    """UTF-16 with a byte order mark: the encoding Task Scheduler exports and schtasks reads."""
    with open(path, "w", encoding="utf-16") as out:
        out.write(task_xml(folder, user))
