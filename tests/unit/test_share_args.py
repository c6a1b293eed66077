"""overlay-share's command line: which form is meant (no subhost needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from overlay_boot.cli.common import UsageError
from overlay_boot.cli.share import Request, parse_args, request_of


def request(*argv: str) -> Request:
    return request_of(parse_args(list(argv)))


def test_share_forms() -> None:
    assert request("/srv/data", "web") == Request(False, "/srv/data", "web", "/srv/data")
    assert request("--", "/srv/data", "web", "/mnt//x/") == \
        Request(False, "/srv/data", "web", "/mnt/x")


def test_remove_with_hostdir_as_before(tmp_path: Path) -> None:
    assert request("--remove", "/srv/data", "web") == Request(True, "/srv/data", "web",
                                                               "/srv/data")
    assert request("--remove", "/srv/data", "web", "/mnt/x") == \
        Request(True, "/srv/data", "web", "/mnt/x")
    # A config file (it exists: it is read) after a relative HOSTDIR is the old form too.
    conf = tmp_path / "web"
    conf.write_text("NAME=web\n")
    result = request("--remove", "data", str(conf))
    assert (result.remove, result.hostdir, result.subhost) == (True, "data", str(conf))


def test_remove_by_subhost_directory() -> None:
    assert request("--remove", "web", "/mnt/x") == Request(True, None, "web", "/mnt/x")
    assert request("--remove", "--", "web", "/mnt/x/") == Request(True, None, "web", "/mnt/x")
    # The D-Bus service's spelling: a trailing "/" even where the host has a file.
    assert request("--remove", "--", "web", "/etc/hostname/") == \
        Request(True, None, "web", "/etc/hostname")
    assert request("--remove", "web", "//") == Request(True, None, "web", "//")


def test_refusals() -> None:
    with pytest.raises(UsageError, match="absolute"):
        request("/srv/data", "web", "relative")
    with pytest.raises(UsageError, match="root directory"):
        request("/srv/data", "web", "/")
    with pytest.raises(SystemExit):  # argparse: an option, not a path
        request("--help-me", "web")
