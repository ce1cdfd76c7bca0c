"""The reference client: the least a Python client must do for a workload, measured.

    python benchmarks/reference_client.py PLAN.json

bench.py writes the plan from a measured run of fund_mail: the emulator's address and CA, the
token request's form, and every Graph GET that run made, in the order it made them. This script
signs in with one token request, then replays those GETs over 4 keep-alive connections (the
4 request slots), decodes each JSON answer, writes each attachment's bytes to a file, and
inserts one row per listed message into a DB of the archive's schema, committed at the end.

It is deliberately minimal: no retries, no paging decisions, no fsync, no index, no manifest.
It does what every run of fund_mail must do, and no more:
- it loads msal and python-dotenv, the libraries a run must load to sign in and to read .env
  (it then signs in with a plain POST: msal's own work for one token is negligible);
- it asks at once only for what the measured run asked before its first list answer came back
  (the first list page, and a folder looked up beside it); the rest waits for its own first
  list answer, since no client can know a day's slices or attachments before it has looked.
Its wall time is a floor that counts the client work every Python client of this product has
to do on this machine (start the interpreter, load msal, TLS, decode JSON, insert rows), which
floor c counts as zero.
"""

import http.client
import json
import queue
import sqlite3
import ssl
import sys
import threading
from pathlib import Path
from urllib.parse import urlencode

import dotenv  # noqa: F401 - loaded by every run, like msal
import msal  # noqa: F401 - loaded by every run to sign in

SLOTS = 4
ROW = (
    "INSERT INTO fund_mail (email_id, subject, sender_address, sender_name, from_address, "
    "from_name, to_recipients, cc_recipients, email_time, kst_time, content, msg_kind, "
    "folder_path, note) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def address(recipient: dict | None) -> tuple[str, str]:
    email = (recipient or {}).get("emailAddress") or {}
    return email.get("address") or "", email.get("name") or ""


def row(message: dict) -> tuple:
    sender, sender_name = address(message.get("sender"))
    author, author_name = address(message.get("from"))
    to = ", ".join(address(r)[0] for r in message.get("toRecipients") or [])
    cc = ", ".join(address(r)[0] for r in message.get("ccRecipients") or [])
    received = message.get("receivedDateTime") or ""
    body = (message.get("body") or {}).get("content") or ""
    subject = message.get("subject") or ""
    return (message["id"], subject, sender, sender_name, author, author_name, to, cc,
            received, received, body, "receive", "", "")  # fmt: skip


def main() -> int:
    plan = json.loads(Path(sys.argv[1]).read_text(encoding="utf-8"))
    context = ssl.create_default_context(cafile=plan["ca"])

    def connect() -> http.client.HTTPSConnection:
        return http.client.HTTPSConnection(plan["host"], plan["port"], context=context)

    sign_in = connect()
    sign_in.request(
        "POST",
        plan["token_path"],
        urlencode(plan["form"]),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    token = json.loads(sign_in.getresponse().read())["access_token"]
    headers = {"Authorization": f"Bearer {token}", **plan["headers"]}
    out = Path(plan["out"])
    out.mkdir(parents=True, exist_ok=True)

    todo: queue.SimpleQueue = queue.SimpleQueue()
    gets = list(enumerate(plan["gets"]))
    at_once = [(n, kind, target) for n, (kind, target, later) in gets if not later]
    after_first_look = [(n, kind, target) for n, (kind, target, later) in gets if later]
    first_list = next((n for n, kind, _ in at_once if kind == "list"), None)
    for item in at_once:
        todo.put(item)
    looked = threading.Event()  # set once everything is queued

    def release() -> None:
        for item in after_first_look:
            todo.put(item)
        looked.set()

    if first_list is None:
        release()
    pages: queue.SimpleQueue = queue.SimpleQueue()
    failures: list[str] = []

    def slot() -> None:
        connection = None
        while True:
            try:
                number, kind, target = todo.get_nowait()
            except queue.Empty:
                if looked.is_set():
                    return
                looked.wait()
                continue
            connection = connection or connect()  # a slot with nothing to do opens nothing
            connection.request("GET", target, headers=headers)
            response = connection.getresponse()
            body = response.read()
            if response.status != 200:
                failures.append(f"{response.status} for {target}")
                if number == first_list:
                    release()
            elif kind == "list":
                pages.put(json.loads(body)["value"])
                if number == first_list:
                    release()
            elif (response.getheader("Content-Type") or "").startswith("application/json"):
                json.loads(body)  # a folder, a message
            else:
                (out / str(number)).write_bytes(body)  # an attachment's or a message's bytes

    slots = [threading.Thread(target=slot) for _ in range(SLOTS)]
    for thread in slots:
        thread.start()
    db = sqlite3.connect(plan["db"], isolation_level=None)
    db.executescript(plan["schema"])
    db.execute("BEGIN")
    # The rows go in while the other answers are still on their way, as an ideal client's would.
    while any(thread.is_alive() for thread in slots) or not pages.empty():
        try:
            db.executemany(ROW, [row(m) for m in pages.get(timeout=0.005)])
        except queue.Empty:
            continue
    db.execute("COMMIT")
    db.close()
    if failures:
        print("\n".join(failures[:5]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
