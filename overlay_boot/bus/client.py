"""Calls of the control plane for the command-line helpers (dbus-next, imported on use).

Every function returns ``None`` when there is nobody to ask — no system bus, or the service
can't be activated — so that the caller falls back to acting directly; an answer of the
service (the subhost is not running, the caller is not root, …) raises `SubhostError`.
"""

from __future__ import annotations

import os
from typing import Any

from ..errors import SubhostError
from .names import BUS_NAME, SUBHOST_IFACE, subhost_path

CALL_TIMEOUT = 30.0  # seconds, D-Bus activation of the service included
# The bus has no one to ask: fall back rather than fail.
UNAVAILABLE = (
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Spawn.ChildExited",
    "org.freedesktop.DBus.Error.Spawn.ExecFailed",
    "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
    "org.freedesktop.DBus.Error.Spawn.FailedToSetup",
    "org.freedesktop.systemd1.NoSuchUnit",
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.TimedOut",
    "org.freedesktop.DBus.Error.Disconnected",
)


def system_bus_present() -> bool:
    address = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "")
    return bool(address) or os.path.exists("/run/dbus/system_bus_socket")


def call_subhost(name: str, member: str, signature: str = "", body: list[Any] | None = None,
                 timeout: float = CALL_TIMEOUT) -> list[Any] | None:
    """Call MEMBER of subhost NAME's object; its reply body, or None when unreachable."""
    if not system_bus_present():
        return None
    try:
        import asyncio

        from dbus_next import BusType, Message, MessageType
        from dbus_next.aio import MessageBus
    except ImportError:
        return None

    async def call() -> Message | None:
        try:
            bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
        except Exception:  # noqa: BLE001 - no bus to talk to
            return None
        try:
            return await asyncio.wait_for(bus.call(Message(
                destination=BUS_NAME, path=subhost_path(name), interface=SUBHOST_IFACE,
                member=member, signature=signature, body=body or [])), timeout)
        except TimeoutError:
            return None
        finally:
            bus.disconnect()

    reply = asyncio.run(call())
    if reply is None:
        return None
    if reply.message_type == MessageType.ERROR:
        if reply.error_name in UNAVAILABLE:
            return None
        text = reply.body[0] if reply.body else reply.error_name
        raise SubhostError(f"{member} of subhost {name} through D-Bus: {text}")
    return list(reply.body)


def stop(name: str) -> bool:
    """Ask the service to stop NAME; False when it can't be asked."""
    return call_subhost(name, "Stop") is not None
