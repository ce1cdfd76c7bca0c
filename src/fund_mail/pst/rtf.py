"""RTF to plain text, for PST messages whose only body is RTF. Pure; no network, no disk.

It keeps the text and paragraph breaks and drops formatting, font and colour tables, pictures
and other ignorable destinations. That is what the archive's content column needs.
"""

from __future__ import annotations

import re

TOKEN = re.compile(
    r"\\([a-zA-Z]+)(-?\d+)? ?|\\'([0-9a-fA-F]{2})|\\([^a-zA-Z])|([{}])|([^\\{}\r\n]+)|[\r\n]+"
)
SKIPPED_DESTINATIONS = {
    "fonttbl", "colortbl", "stylesheet", "info", "pict", "object", "header", "footer",
    "headerl", "headerr", "footerl", "footerr", "listtable", "listoverridetable", "rsidtbl",
    "generator", "xmlnstbl", "themedata", "colorschememapping", "latentstyles", "datastore",
    "fldinst", "filetbl", "revtbl", "pgdsctbl", "mmathPr", "xmlopen", "htmltag",
}  # fmt: skip
BREAKS = {
    "par": "\n",
    "line": "\n",
    "sect": "\n\n",
    "page": "\n\n",
    "tab": "\t",
    "cell": "\t",
    "row": "\n",
    "emdash": "\u2014",
    "endash": "\u2013",
    "bullet": "\u2022",
    "lquote": "\u2018",
    "rquote": "\u2019",
    "ldblquote": "\u201c",
    "rdblquote": "\u201d",
}


def rtf_to_text(rtf: str, default_codepage: str = "cp1252") -> str:
    out: list[str] = []
    stack: list[tuple[bool, int]] = []
    skipping, uc_skip, pending_skip = False, 1, 0
    codepage = default_codepage
    pending_bytes = bytearray()

    def flush_bytes() -> None:
        if pending_bytes:
            if not skipping:
                out.append(pending_bytes.decode(codepage, errors="replace"))
            pending_bytes.clear()

    for match in TOKEN.finditer(rtf):
        word, number, hex_byte, symbol, brace, text = match.groups()
        if hex_byte is not None:
            if pending_skip:
                pending_skip -= 1
                continue
            pending_bytes.append(int(hex_byte, 16))
            continue
        flush_bytes()
        if brace == "{":
            stack.append((skipping, uc_skip))
        elif brace == "}":
            skipping, uc_skip = stack.pop() if stack else (False, 1)
        elif symbol is not None:
            if symbol == "*":
                skipping = True  # an ignorable destination we do not know
            elif symbol in "\\{}" and not skipping:
                out.append(symbol)
            elif symbol == "~" and not skipping:
                out.append("\u00a0")
        elif word is not None:
            if word in SKIPPED_DESTINATIONS:
                skipping = True
            elif word == "ansicpg" and number:
                codepage = f"cp{number}"
            elif word == "uc" and number:
                uc_skip = int(number)
            elif word == "u" and number:
                if not skipping:
                    out.append(chr(int(number) % 65536))
                pending_skip = uc_skip
            elif word in BREAKS and not skipping:
                out.append(BREAKS[word])
        elif text is not None:
            if pending_skip:
                skip = min(pending_skip, len(text))
                text, pending_skip = text[skip:], pending_skip - skip
            if not skipping:
                out.append(text)
    flush_bytes()
    return re.sub(r"\n{3,}", "\n\n", "".join(out)).strip()
