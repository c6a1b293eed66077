# overlay-boot — build, install, test.
#   make demo      set up and run a demo subhost (as root); it removes what it installed at the end
#   make check     set up everything and run all tests (as root)
#   make install   install into $(DESTDIR)$(PREFIX) for Debian's /usr/bin/python3
#   make deb       build the Debian package into $(DEBDIR) (dpkg-buildpackage -us -uc -b)
#   make soak      the long load run: 50 subhosts x 10 start/stop cycles through systemd
#   make reliability  run the reliability suite, write docs/RELIABILITY.md (+ reliability.json)
#   make collection  build the Ansible collection overlayboot.subhosts into $(COLLECTION_OUT)

PREFIX ?= /usr/local
DESTDIR ?=
PYTHON ?= /usr/bin/python3
SBINDIR ?= $(PREFIX)/sbin
MANDIR ?= $(PREFIX)/share/man
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ifeq ($(PREFIX),/usr)
PYDIR ?= /usr/lib/python3/dist-packages
UNITDIR ?= /usr/lib/systemd/system
GENERATORDIR ?= /usr/lib/systemd/system-generators
DBUSPOLICYDIR ?= /usr/share/dbus-1/system.d
DBUSSERVICEDIR ?= /usr/share/dbus-1/system-services
else
PYDIR ?= $(PREFIX)/lib/python3.11/dist-packages
UNITDIR ?= $(PREFIX)/lib/systemd/system
GENERATORDIR ?= $(PREFIX)/lib/systemd/system-generators
# the system bus reads policies only from /usr/share/dbus-1 and /etc/dbus-1
DBUSPOLICYDIR ?= /etc/dbus-1/system.d
# activation files: the system bus also reads /usr/local/share/dbus-1/system-services
DBUSSERVICEDIR ?= $(PREFIX)/share/dbus-1/system-services
endif
CONFDIR ?= /etc/overlay-boot
# The apt hook (overlay-diff --dpkg-hook) goes with the Debian package's layout only: apt runs it
# as root after every dpkg run, so a /usr/local install does not add it unless APT_HOOK=yes.
APTCONFDIR ?= /etc/apt/apt.conf.d
ifeq ($(PREFIX),/usr)
APT_HOOK ?= yes
else
APT_HOOK ?= no
endif
SUBHOSTS_CONF ?= /etc/subhosts.conf
# Compile the installed package to bytecode (the Debian package leaves that to dh_python3).
COMPILE ?= yes
DEBDIR ?= build/deb
# The Ansible collection (ansible/ansible_collections/overlayboot/subhosts) and where its
# galaxy tarball goes.
ANSIBLE_GALAXY ?= ansible-galaxy
COLLECTION_SRC := ansible/ansible_collections/overlayboot/subhosts
COLLECTION_OUT ?= build/collection

VENV := .venv
PYTEST := $(VENV)/bin/python -m pytest
COMMANDS := boot stop go diskfile share diff reset

.PHONY: all setup lint check test-unit test-root test-system soak reliability install uninstall deb demo bench clean \
	collection

all:
	@echo "targets: demo, check, install, uninstall, deb, bench, collection"

setup:
	./.ci/setup

lint: setup
	$(VENV)/bin/ruff check overlay_boot tests bench generator/overlay-boot-generator

# Every tier; a skipped test fails the run (tests/conftest.py, OVERLAY_BOOT_NO_SKIP).
check: setup lint
	OVERLAY_BOOT_NO_SKIP=1 $(PYTEST) -q -rfEs tests

# Each tier alone, under the same rule as check: a skip or an xfail fails the run.
test-unit: setup
	OVERLAY_BOOT_NO_SKIP=1 $(PYTEST) -q -rfEs tests/unit

test-root: setup
	OVERLAY_BOOT_NO_SKIP=1 $(PYTEST) -q -rfEs tests/root

test-system: setup
	OVERLAY_BOOT_NO_SKIP=1 $(PYTEST) -q -rfEs tests/system

# `make check` runs tests/soak short (10 x 3); this is the long run (tests/reliability_report.py
# --soak runs it with the rest of the reliability suite and writes docs/RELIABILITY.md).
soak: setup
	OVERLAY_BOOT_NO_SKIP=1 OVERLAY_BOOT_SOAK=50x10 $(PYTEST) -q -rfEs tests/soak

# docs/RELIABILITY.md and its raw results docs/reliability.json, written by
# tests/reliability_report.py from a run of the reliability suite (as root; the commit is taken
# before the run, a dirty tree is named in the title). Run it on a clean checkout and commit the
# two files on their own. RELIABILITY_ARGS=--soak: with the long load run (50 x 10).
reliability: setup
	$(VENV)/bin/python -m tests.reliability_report $(RELIABILITY_ARGS)

# Besides the package, commands, unit and generator: the manual pages (docs/man), an inactive
# example config, 1.6.4's boot list /etc/subhosts.conf (read by the generator; an existing
# one is the admin's and kept, and uninstall removes it only when unmodified), the bash
# completions (completions/bash/<command>, one file or symlink per command name) and the
# D-Bus policy (dbus/*.conf) when those exist; the D-Bus control plane's unit and activation file;
# the cable service's socket and unit (overlay-boot-net, socket-activated); with PREFIX=/usr
# (or APT_HOOK=yes) the apt hook that reports shadowed files after host upgrades.
install:
	install -d $(DESTDIR)$(PYDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(UNITDIR) $(DESTDIR)$(GENERATORDIR)
	# CONFDIR is changed only where needed: a new ctime of it makes the generator's list of
	# known configs stale until the next daemon-reload (every start then parses every config).
	[ -d $(DESTDIR)$(CONFDIR) ] || install -d -m 0755 $(DESTDIR)$(CONFDIR)
	rm -rf $(DESTDIR)$(PYDIR)/overlay_boot
	cp -r overlay_boot $(DESTDIR)$(PYDIR)/overlay_boot
	find $(DESTDIR)$(PYDIR)/overlay_boot -name __pycache__ -prune -exec rm -rf {} +
	[ "$(COMPILE)" != yes ] || $(PYTHON) -m compileall -q $(DESTDIR)$(PYDIR)/overlay_boot
	# overlay-go needs the standard library only and its start is timed (issue #13): without
	# site (-S, ~5 ms of its 40) it finds PYDIR by itself. A #! line passes one argument: -IS.
	for c in $(COMMANDS); do \
	  if [ $$c = go ]; then \
	    printf '#!%s -IS\nimport sys\nsys.path.append("%s")\n' $(PYTHON) $(PYDIR); \
	  else printf '#!%s -I\n' $(PYTHON); fi > $(DESTDIR)$(SBINDIR)/overlay-$$c; \
	  printf 'from overlay_boot.cli.%s import main\nraise SystemExit(main())\n' \
	    $$c >> $(DESTDIR)$(SBINDIR)/overlay-$$c; \
	  chmod 0755 $(DESTDIR)$(SBINDIR)/overlay-$$c; \
	done
	for u in overlay-boot@.service overlay-boot-cleanup@.service overlay-boot-bus.service \
	    overlay-boot-net.service; do \
	  sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@UNITDIR@|$(UNITDIR)|g' -e 's|@PYTHON@|$(PYTHON)|g' \
	    units/$$u.in > $(DESTDIR)$(UNITDIR)/$$u || exit 1; \
	done
	install -m 0644 units/overlay-boot-net.socket $(DESTDIR)$(UNITDIR)/
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@UNITDIR@|$(UNITDIR)|g' -e 's|@PYDIR@|$(PYDIR)|g' \
	  -e 's|^#!.*python3.*|#!$(PYTHON) -IS|' \
	  generator/overlay-boot-generator > $(DESTDIR)$(GENERATORDIR)/overlay-boot-generator
	chmod 0755 $(DESTDIR)$(GENERATORDIR)/overlay-boot-generator
	install -d $(DESTDIR)$(MANDIR)/man5 $(DESTDIR)$(MANDIR)/man8
	install -m 0644 docs/man/overlay-boot.conf.5 $(DESTDIR)$(MANDIR)/man5/
	for c in $(COMMANDS); do \
	  install -m 0644 docs/man/overlay-$$c.8 $(DESTDIR)$(MANDIR)/man8/ || exit 1; \
	done
	cmp -s etc/overlay-boot/example.conf.sample $(DESTDIR)$(CONFDIR)/example.conf.sample || \
	  install -m 0644 etc/overlay-boot/example.conf.sample $(DESTDIR)$(CONFDIR)/
	[ -e $(DESTDIR)$(SUBHOSTS_CONF) ] || install -D -m 0644 etc/subhosts.conf $(DESTDIR)$(SUBHOSTS_CONF)
	if [ -d completions/bash ]; then \
	  install -d $(DESTDIR)$(BASHCOMPDIR) && cp -P completions/bash/* $(DESTDIR)$(BASHCOMPDIR)/; \
	fi
	# The policy through a rename: the running bus daemon reloads as soon as a file there is
	# closed, and install(1) makes it readable only after that (the daemon would skip it).
	if ls dbus/*.conf >/dev/null 2>&1; then \
	  install -d $(DESTDIR)$(DBUSPOLICYDIR) || exit 1; \
	  for f in dbus/*.conf; do \
	    install -m 0644 $$f $(DESTDIR)$(DBUSPOLICYDIR)/.$${f##*/}.new && \
	    mv -f $(DESTDIR)$(DBUSPOLICYDIR)/.$${f##*/}.new $(DESTDIR)$(DBUSPOLICYDIR)/$${f##*/} || exit 1; \
	  done; \
	fi
	install -d $(DESTDIR)$(DBUSSERVICEDIR)
	sed -e 's|@PYTHON@|$(PYTHON)|g' dbus/org.overlayboot.OverlayBoot1.service.in \
	  > $(DESTDIR)$(DBUSSERVICEDIR)/org.overlayboot.OverlayBoot1.service
	if [ "$(APT_HOOK)" = yes ]; then \
	  install -d $(DESTDIR)$(APTCONFDIR) && \
	  sed -e 's|@SBINDIR@|$(SBINDIR)|g' etc/apt/50overlay-boot.in \
	    > $(DESTDIR)$(APTCONFDIR)/50overlay-boot || exit 1; \
	fi

# Directories of a PREFIX install that only it makes (deepest first): uninstall removes them
# when empty, so that install + uninstall leave the host's file list as it was.
LOCAL_DIRS = $(UNITDIR) $(GENERATORDIR) $(PREFIX)/lib/systemd \
	$(DBUSSERVICEDIR) $(PREFIX)/share/dbus-1 $(BASHCOMPDIR) $(PREFIX)/share/bash-completion \
	$(MANDIR)/man5 $(MANDIR)/man8

uninstall:
	rm -rf $(DESTDIR)$(PYDIR)/overlay_boot
	for c in $(COMMANDS); do rm -f $(DESTDIR)$(SBINDIR)/overlay-$$c; done
	rm -f $(DESTDIR)$(UNITDIR)/overlay-boot@.service $(DESTDIR)$(UNITDIR)/overlay-boot-bus.service
	rm -f $(DESTDIR)$(UNITDIR)/overlay-boot-cleanup@.service
	rm -f $(DESTDIR)$(UNITDIR)/overlay-boot-net.service $(DESTDIR)$(UNITDIR)/overlay-boot-net.socket
	rm -f $(DESTDIR)$(DBUSSERVICEDIR)/org.overlayboot.OverlayBoot1.service
	rm -f $(DESTDIR)$(GENERATORDIR)/overlay-boot-generator
	rm -f $(DESTDIR)$(MANDIR)/man5/overlay-boot.conf.5
	for c in $(COMMANDS); do rm -f $(DESTDIR)$(MANDIR)/man8/overlay-$$c.8; done
	if [ -d completions/bash ]; then \
	  for f in completions/bash/*; do rm -f $(DESTDIR)$(BASHCOMPDIR)/$${f##*/}; done; \
	fi
	for f in dbus/*.conf; do [ ! -e "$$f" ] || rm -f $(DESTDIR)$(DBUSPOLICYDIR)/$${f##*/}; done
	rm -f $(DESTDIR)$(CONFDIR)/example.conf.sample
	rm -f $(DESTDIR)$(APTCONFDIR)/50overlay-boot
	! cmp -s etc/subhosts.conf $(DESTDIR)$(SUBHOSTS_CONF) || rm -f $(DESTDIR)$(SUBHOSTS_CONF)
	-rmdir $(DESTDIR)$(CONFDIR) 2>/dev/null
	# The directories install made under PREFIX, when nothing else is in them (with
	# PREFIX=/usr they are the system's own).
	if [ "$(PREFIX)" != /usr ]; then \
	  for d in $(LOCAL_DIRS); do \
	    [ ! -d $(DESTDIR)$$d ] || rmdir --ignore-fail-on-non-empty $(DESTDIR)$$d || exit 1; \
	  done; \
	fi

# The Debian package, built by dpkg-buildpackage from the files git knows (committed or
# staged or new and not ignored) with packaging/debian as debian/; see packaging/build-deb.
deb:
	packaging/build-deb $(DEBDIR)

# ansible-galaxy keeps nothing of the build in the source (ansible-test's tests/output is
# left out by galaxy.yml's build_ignore).
collection:
	mkdir -p $(COLLECTION_OUT)
	$(ANSIBLE_GALAXY) collection build --force --output-path $(COLLECTION_OUT) $(COLLECTION_SRC)

demo: setup
	./demo/demo.sh

# Writes bench/RESULTS.md and bench/results.json (commit them alone, from a clean tree);
# BENCH_ARGS=--quick for a smoke run, or --reps N, --concurrency 1,10,100, --memory-counts ...
bench: setup
	$(VENV)/bin/python -m bench --publish $(BENCH_ARGS)

clean:
	rm -rf build *.egg-info .pytest_cache .ruff_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
