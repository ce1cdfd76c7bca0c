"""The Windows service shell: pywin32's service framework around service.serve, nothing more.

The service reports RUNNING to the service manager at once and does all its work, from
reading .env on, on a worker thread. A service that does its start-up work before reporting
RUNNING is what the service manager gives up on ("did not respond to the start or control
request in a timely fashion"). Stop reports STOP_PENDING with a wait hint and sets the stop
event; the loop ends the running cycle at a safe moment (service.py).

PyInstaller must be told about these modules, which pywin32 imports dynamically:
HIDDEN_IMPORTS below, used by make_exe.sh for fund_mail_service.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable

SERVICE_NAME = "fund_mail"
DISPLAY_NAME = "fund_mail mailbox archive"
DESCRIPTION = "Archives the fund mailbox every INTERVAL_MINUTES and delivers it over SFTP."
HIDDEN_IMPORTS = (
    "win32timezone",
    "win32serviceutil",
    "win32service",
    "win32event",
    "servicemanager",
    "pywintypes",
)
STOP_WAIT_HINT_MS = 10_000

# What the worker thread runs: set by handle() before the service manager starts us.
_work: Callable[[threading.Event], None] | None = None


if sys.platform == "win32":
    import servicemanager  # pyright: ignore[reportMissingModuleSource]
    import win32service  # pyright: ignore[reportMissingModuleSource]
    import win32serviceutil  # pyright: ignore[reportMissingModuleSource]

    class FundMailService(win32serviceutil.ServiceFramework):
        _svc_name_ = SERVICE_NAME
        _svc_display_name_ = DISPLAY_NAME
        _svc_description_ = DESCRIPTION
        # The frozen executable hosts the service itself (no pythonservice.exe).
        _exe_name_ = sys.executable

        def __init__(self, args: list[str]) -> None:
            super().__init__(args)
            self.stop_event = threading.Event()

        def SvcDoRun(self) -> None:  # noqa: N802 - pywin32's name
            self.ReportServiceStatus(win32service.SERVICE_RUNNING)
            work = _work
            if work is None:
                return
            worker = threading.Thread(
                target=work, args=(self.stop_event,), name="fund_mail-service", daemon=True
            )
            worker.start()
            worker.join()

        def SvcStop(self) -> None:  # noqa: N802 - pywin32's name
            self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING, waitHint=STOP_WAIT_HINT_MS)
            self.stop_event.set()

    def handle(argv: list[str], work: Callable[[threading.Event], None]) -> int:
        """No arguments: started by the service manager. Otherwise install|start|stop|..."""
        global _work
        _work = work
        if len(argv) <= 1:
            servicemanager.Initialize()
            servicemanager.PrepareToHostSingle(FundMailService)
            servicemanager.StartServiceCtrlDispatcher()
            return 0
        return int(win32serviceutil.HandleCommandLine(FundMailService, argv=argv) or 0)
