# overlay-boot — build, install, test.
#   make demo      set up and run a demo subhost (as root)
#   make check     set up everything and run all tests (as root)
#   make install   install into $(DESTDIR)$(PREFIX) for Debian's /usr/bin/python3

PREFIX ?= /usr/local
DESTDIR ?=
PYTHON ?= /usr/bin/python3
SBINDIR ?= $(PREFIX)/sbin
ifeq ($(PREFIX),/usr)
PYDIR ?= /usr/lib/python3/dist-packages
UNITDIR ?= /usr/lib/systemd/system
GENERATORDIR ?= /usr/lib/systemd/system-generators
else
PYDIR ?= $(PREFIX)/lib/python3.11/dist-packages
UNITDIR ?= $(PREFIX)/lib/systemd/system
GENERATORDIR ?= $(PREFIX)/lib/systemd/system-generators
endif
CONFDIR ?= /etc/overlay-boot

VENV := .venv
PYTEST := $(VENV)/bin/python -m pytest
COMMANDS := boot stop go diskfile

.PHONY: all setup lint check test-unit test-root test-system install uninstall demo bench clean

all:
	@echo "targets: demo, check, install, uninstall, bench"

setup:
	./.ci/setup

lint: setup
	$(VENV)/bin/ruff check overlay_boot tests generator/overlay-boot-generator

# Every tier; a skipped test fails the run (tests/conftest.py, OVERLAY_BOOT_NO_SKIP).
check: setup lint
	OVERLAY_BOOT_NO_SKIP=1 $(PYTEST) -q -rfEs tests

test-unit: setup
	$(PYTEST) -q tests/unit

test-root: setup
	$(PYTEST) -q tests/root

test-system: setup
	$(PYTEST) -q tests/system

install:
	install -d $(DESTDIR)$(PYDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(GENERATORDIR)
	install -d -m 0755 $(DESTDIR)$(CONFDIR)
	rm -rf $(DESTDIR)$(PYDIR)/overlay_boot
	cp -r overlay_boot $(DESTDIR)$(PYDIR)/overlay_boot
	find $(DESTDIR)$(PYDIR)/overlay_boot -name __pycache__ -prune -exec rm -rf {} +
	$(PYTHON) -m compileall -q $(DESTDIR)$(PYDIR)/overlay_boot
	for c in $(COMMANDS); do \
	  printf '#!%s -I\nfrom overlay_boot.cli.%s import main\nraise SystemExit(main())\n' \
	    $(PYTHON) $$c > $(DESTDIR)$(SBINDIR)/overlay-$$c; \
	  chmod 0755 $(DESTDIR)$(SBINDIR)/overlay-$$c; \
	done
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@UNITDIR@|$(UNITDIR)|g' -e 's|@PYTHON@|$(PYTHON)|g' \
	  units/overlay-boot@.service.in > $(DESTDIR)$(UNITDIR)/overlay-boot@.service
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@UNITDIR@|$(UNITDIR)|g' -e 's|^#!.*python3.*|#!$(PYTHON) -I|' \
	  generator/overlay-boot-generator > $(DESTDIR)$(GENERATORDIR)/overlay-boot-generator
	chmod 0755 $(DESTDIR)$(GENERATORDIR)/overlay-boot-generator

uninstall:
	rm -rf $(DESTDIR)$(PYDIR)/overlay_boot
	for c in $(COMMANDS); do rm -f $(DESTDIR)$(SBINDIR)/overlay-$$c; done
	rm -f $(DESTDIR)$(UNITDIR)/overlay-boot@.service
	rm -f $(DESTDIR)$(GENERATORDIR)/overlay-boot-generator
	-rmdir $(DESTDIR)$(CONFDIR) 2>/dev/null

demo: setup
	$(VENV)/bin/python -m tests.demo

bench: setup
	$(VENV)/bin/python -m bench

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
