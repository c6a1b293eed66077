"""The two Ansible installations the collection is tested with, and running playbooks.

Debian 12's ansible-core 2.14 (apt, /usr/bin) and the current ansible-core from PyPI in
REPO/.venv-ansible; .ci/setup installs both. Missing ones fail the tests (a skip is a failure).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
COLLECTIONS = REPO / "ansible"
COLLECTION = COLLECTIONS / "ansible_collections" / "overlayboot" / "subhosts"
PLAYBOOKS = COLLECTIONS / "tests" / "playbooks"
ANSIBLES = {"debian-2.14": Path("/usr/bin"), "pypi": REPO / ".venv-ansible" / "bin"}
RECAP = re.compile(r"^(\S+)\s+:\s+ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)",
                   re.MULTILINE)


def bindir(which: str) -> Path:
    path = ANSIBLES[which]
    assert (path / "ansible-playbook").exists(), f"{path}/ansible-playbook missing: run .ci/setup"
    return path


def environment(which: str) -> dict[str, str]:
    """Environment for ansible-* of WHICH with the collection from this work tree."""
    path = bindir(which)
    return {
        "PATH": f"{path}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "ANSIBLE_COLLECTIONS_PATH": str(COLLECTIONS),
        "ANSIBLE_COLLECTIONS_PATHS": str(COLLECTIONS),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_RETRY_FILES_ENABLED": "0",
        "ANSIBLE_LOCALHOST_WARNING": "0",
        "ANSIBLE_INVENTORY_UNPARSED_WARNING": "0",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
        "LANG": "C.UTF-8",
    }


def recap(output: str) -> dict[str, dict[str, int]]:
    """PLAY RECAP of a playbook run: host -> ok, changed, unreachable, failed."""
    found = {}
    for host, ok, changed, unreachable, failed in RECAP.findall(output):
        found[host] = {"ok": int(ok), "changed": int(changed),
                       "unreachable": int(unreachable), "failed": int(failed)}
    assert found, f"no PLAY RECAP in:\n{output}"
    return found
