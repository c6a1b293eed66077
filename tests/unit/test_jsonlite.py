"""overlay_boot/jsonlite.py: the json package's output and input, without loading it.

The comparisons run in this interpreter (where the json package is loaded, so the C scanner
reports errors with its exception class); the "without json" cases run in a fresh
``/usr/bin/python3 -I -S`` as PID 1 and overlay-go run, where it cannot."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from overlay_boot import jsonlite

REPO = Path(__file__).resolve().parents[2]

VALUES = [
    {},
    [],
    {"op": "run", "argv": ["sh", "-c", "echo 'é' \"\\\n\t"], "env": {"A": "1"}, "cwd": None,
     "login": True, "tty": False, "rows": 24, "cols": 80},
    {"name": "web", "leader_pid": 123, "services": [["ssh", "started"]], "x": 1.5,
     "nested": {"a": [1, [2, [3, {}]]]}, "big": 2 ** 70, "neg": -0.25, "u": "\u2603\U0001f600"},
    "a string",
    0,
    None,
    True,
]


@pytest.mark.parametrize("value", VALUES)
def test_dumps_is_json_dumps_and_loads_reads_it_back(value: object) -> None:
    text = jsonlite.dumps(value)
    assert text == json.dumps(value)
    assert jsonlite.loads(text) == value == json.loads(text)
    assert jsonlite.loads(text.encode()) == value
    assert jsonlite.loads(f" \n\t{text}\r\n ") == value


def test_record_text_has_a_key_per_line_and_reads_back() -> None:
    record = {"name": "web", "services": [["ssh", "started"], ["cron", "failed"]],
              "interfaces": ["web.0"], "leader_pid": 7}
    text = jsonlite.record_text(record)
    assert text.endswith("}\n") and len(text.splitlines()) == len(record) + 2
    assert json.loads(text) == record == jsonlite.loads(text)


@pytest.mark.parametrize("text", [
    "", " ", "x", "{", "[1,", '{"a": }', '{"a" 1}', "[1] [2]", '{"a": 1}x', "NaN",
    "[Infinity]", "-Infinity", '"\x01"', '"\\q"', '"\\ud800', b"\xff\xfe", b'"\xc3"',
    "[" * 100_000 + "]" * 100_000,
])
def test_what_is_not_json_is_a_value_error(text: str | bytes) -> None:
    with pytest.raises(ValueError):
        jsonlite.loads(text)


@pytest.mark.parametrize("value", [float("nan"), [float("inf")], {"a": object()}, {(1, 2): 3},
                                   b"bytes"])
def test_what_json_cannot_carry_is_refused(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        jsonlite.dumps(value)


def test_a_circular_value_is_refused() -> None:
    value: list = []
    value.append(value)
    with pytest.raises(ValueError):
        jsonlite.dumps(value)


def test_without_the_json_package_errors_are_value_errors_and_json_stays_unloaded() -> None:
    code = (
        "import sys\n"
        f"sys.path.append({str(REPO)!r})\n"
        "from overlay_boot import jsonlite\n"
        "bad = ['\"\\x01\"', '\"\\\\q\"', '{\"a\": }', 'x', '[1', 'NaN', '[' * 100000]\n"
        "kinds = []\n"
        "for text in bad:\n"
        "    try:\n"
        "        jsonlite.loads(text)\n"
        "        kinds.append('parsed')\n"
        "    except ValueError:\n"
        "        kinds.append('ValueError')\n"
        "assert jsonlite.loads(jsonlite.dumps({'a': [1, 'é']})) == {'a': [1, 'é']}\n"
        "print(' '.join(kinds), 'json' in sys.modules, 're' in sys.modules)\n"
    )
    result = subprocess.run(["/usr/bin/python3", "-I", "-S", "-c", code], capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["ValueError"] * 7 + ["False", "False"]
    assert sys.modules["json"]  # this interpreter's json is what the comparisons used
