"""The cable service's wire format: every message between ``net`` (client) and ``netd``.

Transport: ``AF_UNIX`` ``SOCK_SEQPACKET`` (``/run/overlay-boot/net.sock``), one request and one
answer per connection, each one message of UTF-8 JSON.

Request, client → service (``encode_request`` / ``decode_request``)::

    {"netns": NAME, "cables": [CABLE, ...], "vlans": [VLAN, ...]}

  NAME is the subhost's network namespace (``/run/netns/NAME``). CABLE and VLAN are objects
  with exactly the fields of ``config.Cable`` and ``config.Vlan``: names and JSON types are
  read from those records' fields (``Record``), so a field added there is carried without a
  change here. The message carries one file descriptor (``SCM_RIGHTS``): the client's network
  namespace, where the host ends are made.

Answer, service → client (``encode_answer`` / ``decode_answer``)::

    {"ok": true}    or    {"ok": false, "error": MESSAGE}

The service is root's only; still, it checks everything it reads (``BadRequest``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import NoneType

from . import record
from .config import Cable, Vlan

# What a field's annotation may name: what JSON carries as is.
_JSON_TYPES: dict[str, type] = {"int": int, "str": str, "float": float, "bool": bool,
                                "None": NoneType}


class BadRequest(Exception):
    """A message that cannot be understood; nothing was done."""


class Record:
    """The JSON object form of record class CLS (`record.Record`): its fields, each with the
    types it may take."""

    def __init__(self, cls: type, what: str) -> None:
        self.cls = cls
        self.what = what
        self.fields = {name: _types(annotation, cls, name)
                       for name, annotation in record.field_types(cls).items()}

    def encode(self, item: object) -> dict[str, object]:
        return {name: getattr(item, name) for name in self.fields}

    def decode(self, item: object) -> object:
        if not isinstance(item, dict) or set(item) != set(self.fields):
            raise BadRequest(f"a {self.what} must be an object with exactly "
                             f"{', '.join(self.fields)}")
        for name, types in self.fields.items():
            value = item[name]
            # bool is an int to isinstance(): only a bool field takes true/false
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
                raise BadRequest(f"{self.what} field {name}: unexpected {type(value).__name__}")
        return self.cls(**item)


def _types(annotation: object, cls: type, name: str) -> tuple[type, ...]:
    """The types of annotation ``int``, ``str | None``…; TypeError for one JSON can't carry
    (raised when this module is imported: a new field of such a type fails loudly)."""
    words = str(annotation).split("|") if isinstance(annotation, str) else None
    if words is None:
        found = getattr(annotation, "__args__", (annotation,))
        words = [getattr(t, "__name__", str(t)).replace("NoneType", "None") for t in found]
    try:
        return tuple(_JSON_TYPES[word.strip()] for word in words)
    except KeyError:
        raise TypeError(f"{cls.__name__}.{name}: the cable service cannot carry a field of "
                        f"type {annotation}") from None


CABLE = Record(Cable, "cable")
VLAN = Record(Vlan, "VLAN")


def encode_request(netns_name: str, cables: Sequence[Cable], vlans: Sequence[Vlan]) -> bytes:
    return json.dumps({"netns": netns_name,
                       "cables": [CABLE.encode(c) for c in cables],
                       "vlans": [VLAN.encode(v) for v in vlans]}).encode()


def decode_request(data: bytes) -> tuple[str, list[Cable], list[Vlan]]:
    """(netns name, cables, VLANs); BadRequest says what is wrong. Whether the netns exists
    is the service's to check."""
    try:
        request = json.loads(data)
    except ValueError as exc:
        raise BadRequest(f"not JSON: {exc}") from None
    if not isinstance(request, dict) or set(request) != {"netns", "cables", "vlans"}:
        raise BadRequest('expected an object with "netns", "cables" and "vlans"')
    name = request["netns"]
    if (not isinstance(name, str) or not name or "/" in name or "\0" in name
            or name in (".", "..") or len(name) > 255):
        raise BadRequest(f"bad network namespace name {name!r}")
    cables = [CABLE.decode(item) for item in _list(request["cables"], "cables")]
    vlans = [VLAN.decode(item) for item in _list(request["vlans"], "vlans")]
    return name, cables, vlans  # type: ignore[return-value]


def _list(value: object, what: str) -> list[object]:
    if not isinstance(value, list):
        raise BadRequest(f'"{what}" must be a list')
    return value


def encode_answer(error: str | None) -> bytes:
    """The answer: success when ERROR is None."""
    return json.dumps({"ok": True} if error is None else {"ok": False, "error": error}).encode()


def decode_answer(data: bytes) -> str | None:
    """None for success, else the service's error message; ValueError for anything else."""
    try:
        answer = json.loads(data)
        ok = answer["ok"]
    except (ValueError, TypeError, KeyError):
        raise ValueError(f"the cable service answered nonsense: {data[:200]!r}") from None
    if ok is True:
        return None
    error = answer.get("error")
    return error if isinstance(error, str) and error else "the cable service failed"
