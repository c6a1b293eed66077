"""Test-suite wide rules: root tests need root; under `make check` (and CI) nothing may skip;
a test that needs what this machine lacks (``@pytest.mark.needs("8021q")``) is not run and is
listed under "not verified here" at the end — never counted as passed."""

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


def pytest_configure(config):
    config.addinivalue_line("markers", "needs(feature): runs only where this machine has "
                            "FEATURE (tests/kernel_features.py); else listed as not verified")
    config.not_verified = []


def pytest_collection_modifyitems(config, items):
    from tests.kernel_features import missing

    kept = []
    for item in items:
        marker = item.get_closest_marker("needs")
        lacking = missing(marker.args[0]) if marker else None
        if lacking:
            config.not_verified.append((item.nodeid, lacking))
        else:
            kept.append(item)
    if len(kept) < len(items):
        config.hook.pytest_deselected(items=[i for i in items if i not in kept])
        items[:] = kept
    if os.geteuid() == 0:
        return
    for item in items:
        if item.get_closest_marker("root") or item.get_closest_marker("system"):
            item.add_marker(pytest.mark.skip(reason="needs root"))


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.not_verified:
        terminalreporter.section("not verified here")
        for nodeid, lacking in config.not_verified:
            terminalreporter.line(f"{nodeid}: needs {lacking}")
        terminalreporter.line(f"{len(config.not_verified)} not verified here "
                              "(not run, not counted as passed)")
