"""The Ansible collection overlayboot.subhosts (ansible/): `ansible-test sanity` with Debian 12's
ansible-core 2.14 and with the current one from PyPI, and the galaxy build (`make collection`)
installed and read back. The playbooks run in tests/system/test_ansible*.py.

Sanity tests chosen for CI time: each test that needs a virtualenv of its own costs ~20-30 s
the first time on this 2-CPU machine (ansible-test keeps them in ~/.ansible/test/venv; later
runs take ~20 s for 2.14 and ~30 s for the current version). The current ansible-core runs
every test except changelog (no changelog fragments kept), pep8, yamllint and runtime-metadata
(style of a few files, not worth three more virtualenvs: pylint stays). 2.14 runs
validate-modules (its own documentation and argument-spec schema), compile and the text checks;
its import and ansible-doc checks are left to real use: the box tests load all three plugins
with 2.14 and test_build_and_install reads their documentation with it."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from tests.ansible_runs import COLLECTION, REPO, environment

SKIPPED_SANITY = {
    "debian-2.14": ["changelog", "pep8", "pylint", "yamllint", "runtime-metadata", "import",
                    "ansible-doc"],
    "pypi": ["changelog", "pep8", "yamllint", "runtime-metadata"],
}


@pytest.mark.parametrize("which", ["debian-2.14", "pypi"])
def test_sanity(which: str) -> None:
    skips = [arg for test in SKIPPED_SANITY[which] for arg in ("--skip-test", test)]
    result = subprocess.run(
        ["ansible-test", "sanity", "--python", "3.11", "--color", "no", *skips],
        cwd=COLLECTION, env={**environment(which), "HOME": str(Path.home())},
        capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-6000:]
    ran = [line for line in result.stdout.splitlines() if line.startswith("Running sanity test")]
    expected = {"validate-modules", "compile"}
    if which == "pypi":
        expected |= {"import", "pylint", "ansible-doc"}
    for test in expected:
        assert any(f'"{test}"' in line for line in ran), (test, result.stdout)


def test_build_and_install(tmp_path: Path) -> None:
    build = subprocess.run(["make", "-s", "-C", str(REPO), "collection",
                            f"COLLECTION_OUT={tmp_path}"],
                           env=environment("debian-2.14"), capture_output=True, text=True,
                           timeout=300)
    assert build.returncode == 0, build.stderr
    [tarball] = tmp_path.glob("overlayboot-subhosts-*.tar.gz")
    with tarfile.open(tarball) as tar:
        names = set(tar.getnames())
    assert {"plugins/modules/subhost.py", "plugins/connection/overlay_go.py",
            "plugins/inventory/subhosts.py", "README.md", "MANIFEST.json"} <= names
    assert not any(name.startswith("tests/output") for name in names)
    for which in ("debian-2.14", "pypi"):
        installed = tmp_path / which
        env = {**environment(which), "ANSIBLE_COLLECTIONS_PATH": str(installed),
               "ANSIBLE_COLLECTIONS_PATHS": str(installed)}
        subprocess.run(["ansible-galaxy", "collection", "install", "--offline", "-p",
                        str(installed), str(tarball)], env=env, check=True,
                       capture_output=True, text=True, timeout=300)
        for kind, plugin in (("module", "subhost"), ("connection", "overlay_go"),
                             ("inventory", "subhosts")):
            doc = subprocess.run(["ansible-doc", "-t", kind, f"overlayboot.subhosts.{plugin}"],
                                 env=env, capture_output=True, text=True, timeout=120)
            assert doc.returncode == 0 and str(installed) in doc.stdout, doc.stderr


BAD_INPUT = [
    ({"name": "../etc", "base": "/x"}, "is not a valid subhost name"),
    ({"name": "ok1", "base": "relative/dir"}, "is not an absolute path"),
    ({"name": "ok1", "base": "/x", "config": {"NAME": "other"}}, "NAME is set by the name option"),
    ({"name": "ok1", "base": "/x", "config": {"START": "a\nSHARE=/"}}, "must be one line"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_module_refuses_bad_input(tmp_path: Path, args: dict, message: str) -> None:
    """The subhost module refuses bad arguments with one clear message, before it touches
    anything (BASE is never created, no configuration written)."""
    if "base" in args and args["base"].startswith("/"):
        args = {**args, "base": str(tmp_path / "base")}
    result = subprocess.run(
        ["ansible", "localhost", "-c", "local", "-m", "overlayboot.subhosts.subhost",
         "-a", json.dumps(args)], env=environment("debian-2.14"), cwd=tmp_path,
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stdout, result.stdout
    assert not (tmp_path / "base").exists()
    assert not Path(f"/etc/overlay-boot/{args['name']}.conf").exists()
