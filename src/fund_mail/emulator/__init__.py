"""A faithful local emulator of the Graph mail endpoints and the Entra token endpoint."""

from fund_mail.emulator.mailbox import (
    Mailbox,
    Message,
    file_attachment,
    inner_message,
    item_attachment,
    reference_attachment,
)
from fund_mail.emulator.server import Fault, GraphEmulator, RequestRecord

__all__ = [
    "Fault", "GraphEmulator", "Mailbox", "Message", "RequestRecord", "file_attachment",
    "inner_message", "item_attachment", "reference_attachment",
]  # fmt: skip
