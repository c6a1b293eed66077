"""Test-suite wide rules: root tests need root; under `make check`, `make test-*` and CI
(``OVERLAY_BOOT_NO_SKIP`` or ``CI`` set) nothing may skip or be marked expected-to-fail: a
skipped test, a skipped module (``pytest.skip(..., allow_module_level=True)``, a module's
``pytestmark = skipif``, ``importorskip``) and any xfail/xpass fail the run. A test that needs
what this machine lacks (``@pytest.mark.needs("8021q")``) is not run and is listed under "not
verified here" at the end — never counted as passed. tests/unit/test_skip_policy.py runs these
rules on small test files."""

from __future__ import annotations

import os

import pytest

NO_SKIP = bool(os.environ.get("OVERLAY_BOOT_NO_SKIP") or os.environ.get("CI"))


@pytest.fixture(scope="session", autouse=True)
def _log_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Subhosts the tests start without systemd and without LOG= log here, not in /var/log."""
    os.environ["OVERLAY_BOOT_LOG_DIR"] = str(tmp_path_factory.mktemp("overlay-boot-logs"))


def _reason(longrepr: object) -> str:
    return str(longrepr[2] if isinstance(longrepr, tuple) else longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not NO_SKIP:
        return
    if hasattr(report, "wasxfail"):
        # xfail (marker or pytest.xfail()) and xpass alike: an expected failure is not a pass
        reason = report.wasxfail or "no reason given"
        del report.wasxfail  # else pytest does not count the failure in its exit status
        report.outcome = "failed"
        report.longrepr = f"xfail is not allowed here (OVERLAY_BOOT_NO_SKIP/CI): {reason}"
    elif report.skipped:
        report.outcome = "failed"
        report.longrepr = f"skipped tests fail the run here: {_reason(report.longrepr)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module or class skipped while collecting never reaches the runtest hook above."""
    outcome = yield
    report = outcome.get_result()
    if NO_SKIP and report.skipped:
        report.outcome = "failed"
        report.longrepr = (f"skipped modules fail the run here: {collector.nodeid}: "
                           f"{_reason(report.longrepr)}")


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


def pytest_sessionfinish(session, exitstatus):
    """The not-verified list goes into the reliability records too (tests/reliability.py)."""
    from tests.reliability import record

    for nodeid, lacking in session.config.not_verified:
        record("not_verified", nodeid, needs=lacking)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if config.not_verified:
        terminalreporter.section("not verified here")
        for nodeid, lacking in config.not_verified:
            terminalreporter.line(f"{nodeid}: needs {lacking}")
        terminalreporter.line(f"{len(config.not_verified)} not verified here "
                              "(not run, not counted as passed)")
