"""Test-suite wide rules: root tests need root; under `make check` (and CI) nothing may skip."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _log_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Subhosts the tests start without systemd and without LOG= log here, not in /var/log."""
    os.environ["OVERLAY_BOOT_LOG_DIR"] = str(tmp_path_factory.mktemp("overlay-boot-logs"))

NO_SKIP = bool(os.environ.get("OVERLAY_BOOT_NO_SKIP") or os.environ.get("CI"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.longrepr = f"skipped tests fail the run here: {reason}"


def pytest_collection_modifyitems(config, items):
    if os.geteuid() == 0:
        return
    for item in items:
        if item.get_closest_marker("root") or item.get_closest_marker("system"):
            item.add_marker(pytest.mark.skip(reason="needs root"))
