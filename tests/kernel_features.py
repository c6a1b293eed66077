"""What this machine's kernel can do, for tests that need a feature (``@pytest.mark.needs``).

A test whose feature is missing is not run and not counted as passed: tests/conftest.py lists
it under "not verified here" at the end of the run (README, "The two commands").
"""

from __future__ import annotations

import functools
import os
import subprocess


@functools.cache
def vlan_8021q() -> bool:
    """802.1Q: a VLAN on a veth, tried in a throw-away network namespace."""
    script = ("ip link add fa type veth peer name fb && "
              "ip link add link fa name fa.9 type vlan id 9")
    result = subprocess.run(["unshare", "--net", "sh", "-c", script], capture_output=True)
    return result.returncode == 0


def modules() -> bool:
    """Loadable kernel modules (CONFIG_MODULES)."""
    return os.path.exists("/proc/modules")


def proc_file(name: str) -> bool:
    return os.path.exists(f"/proc/{name}")


#: feature name -> (probe, what it is)
FEATURES = {
    "8021q": (vlan_8021q, "a kernel with 802.1Q VLAN support (CONFIG_VLAN_8021Q)"),
    "no-8021q": (lambda: not vlan_8021q(), "a kernel without 802.1Q VLAN support"),
    "modules": (modules, "a kernel with loadable modules (CONFIG_MODULES)"),
    "sysrq": (lambda: proc_file("sysrq-trigger"), "/proc/sysrq-trigger (CONFIG_MAGIC_SYSRQ)"),
    "kcore": (lambda: proc_file("kcore"), "/proc/kcore (CONFIG_PROC_KCORE)"),
}


def missing(feature: str) -> str | None:
    """None when this machine has FEATURE, else what is missing."""
    probe, what = FEATURES[feature]
    return None if probe() else what
