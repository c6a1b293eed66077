"""JSON without the ``json`` package: its C accelerator ``_json``, built into the interpreter.

``import json`` loads ``re`` and compiles its patterns: 0.3 MiB more in every PID 1 (PSS,
measured with 30 running; a subhost's budget is 5 MiB) and ~6 ms more in every ``overlay-go``
(budget 40 ms). PID 1 (its plan, the control socket, the runtime record) and the control
socket's clients speak JSON through this module. Output and accepted input are the json
package's (``ensure_ascii``, its default separators, strict strings), except that NaN and the
infinities are refused both ways, as RFC 8259 has them not.
"""

from __future__ import annotations

import _json

_WHITESPACE = " \t\n\r"


class _StrictDecoding:
    """The settings the C scanner reads (those of ``json.JSONDecoder(strict=True)``)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    @staticmethod
    def parse_constant(name: str) -> object:
        raise ValueError(f"{name} is not a JSON value")


_scan = _json.make_scanner(_StrictDecoding())


def _unserializable(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def dumps(value: object) -> str:
    """``json.dumps(value, allow_nan=False)``."""
    encode = _json.make_encoder({}, _unserializable, _json.encode_basestring_ascii, None,
                                ": ", ", ", False, False, False)
    return "".join(encode(value, 0))


def loads(text: str | bytes) -> object:
    """``json.loads(text)`` of a str or of UTF-8 bytes; ValueError for anything not JSON."""
    if not isinstance(text, str):
        text = bytes(text).decode("utf-8")  # UnicodeDecodeError is a ValueError
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as stop:
        raise ValueError(f"not JSON at character {stop.value}") from None
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None
    except SystemError:
        # Some errors (a control character in a string, a bad escape) the scanner reports
        # with json.decoder's exception class; where the json package is not loaded it
        # can't, and says so with a SystemError.
        raise ValueError("not JSON: bad string") from None
    if text[end:].strip(_WHITESPACE):
        raise ValueError(f"not JSON: extra data at character {end}")
    return value


def record_text(record: dict) -> str:
    """A record as a file: a JSON object with one top-level key per line."""
    lines = [f" {dumps(str(key))}: {dumps(value)}" for key, value in record.items()]
    return "{\n" + ",\n".join(lines) + "\n}\n"
