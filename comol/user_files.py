"""Reading files a user named, so that every way they can be malformed is an ``InputFileError`` naming the file.

One owner for "bytes from the user → Python values": text must be UTF-8, JSON must parse without exhausting the
interpreter (deep nesting, integers of thousands of digits) and be small enough to hold.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from comol.errors import InputFileError

# A config or record file is read whole: refuse one bigger than any real one before reading it into memory.
MAX_BYTES = 1 << 30


def read_text(path: str | Path, what: str) -> str:
    """The file's text; a missing file is a ``FileNotFoundError``, a binary or non-UTF-8 one an ``InputFileError``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: no such file: {path}")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise InputFileError(path, what, f"{size:,} bytes is more than the {MAX_BYTES:,} a {what} may have")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        raise InputFileError(path, what, f"it is not UTF-8 text (byte {err.start}: {err.reason})") from None
    if "\x00" in text:
        raise InputFileError(path, what, "it is binary (holds NUL bytes), not text")
    return text


def parse_json(text: str, source: object, what: str) -> Any:
    """``text`` as JSON; invalid, too deeply nested or overlong numbers name ``source``."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputFileError(source, what, f"is not valid JSON: {err}") from None
    except RecursionError:
        raise InputFileError(source, what, "its JSON is nested too deeply to read") from None
    except ValueError:  # an integer longer than Python converts
        limit = sys.get_int_max_str_digits()
        raise InputFileError(source, what, f"it holds an integer of more than {limit:,} digits") from None


def read_json(path: str | Path, what: str) -> Any:
    """The parsed JSON file at ``path`` (see ``read_text`` and ``parse_json`` for what is refused)."""
    return parse_json(read_text(path, what), path, what)
