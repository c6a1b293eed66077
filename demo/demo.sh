#!/bin/bash
# A demo subhost: install overlay-boot, start a subhost with a cable and one service, look
# at it from inside, stop it, and show that nothing is left. Run as root (`make demo`).
#
# The demo leaves the host as it found it: at the end (also after a failure or Ctrl-C) it
# stops what it started, runs `make uninstall` and removes the subhost directory and log it
# made. Only what was there before stays: an overlay-boot already installed under PREFIX
# (updated from this checkout, and said so at the end) or an existing DEMO_BASE.
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=${DEMO_NAME:-obdemo}
BASE=${DEMO_BASE:-/var/lib/overlay-boot-demo}
PREFIX=${PREFIX:-/usr/local}
SBIN=${DEMO_SBIN:-$PREFIX/sbin}
LOG_DIR=/var/log/overlay-boot

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }
have_systemd() { [ -d /run/systemd/system ]; }

# What was there before the demo: kept at the end, everything else is removed.
had_install=no; [ ! -e "$SBIN/overlay-boot" ] || had_install=yes
had_base=no; [ ! -e "$BASE" ] || had_base=yes
had_log_dir=no; [ ! -e "$LOG_DIR" ] || had_log_dir=yes
had_log=no; [ ! -e "$LOG_DIR/$NAME.log" ] || had_log=yes
started=no

clean_up() {
  status=$?
  trap - EXIT INT TERM
  set +e
  step "clean up"
  if [ "$started" = yes ]; then
    "$SBIN/overlay-stop" "$BASE/$NAME.conf" >/dev/null 2>&1
  fi
  left=""
  if [ "$had_base" = yes ]; then
    left="$BASE (there before the demo)"
  elif awk '{ print $5 }' /proc/self/mountinfo | grep -q -F -x -e "$BASE/live" \
      -e "$BASE/live/hello"; then
    # never remove through a root or share that is still mounted (a failed stop)
    left="$BASE (still mounted: stop the subhost, then rm -rf $BASE)"
  else
    rm -rf "$BASE"
  fi
  [ "$had_log" = yes ] || rm -f "$LOG_DIR/$NAME.log"
  [ "$had_log_dir" = yes ] || rmdir "$LOG_DIR" 2>/dev/null
  if [ "$had_install" = yes ]; then
    echo "overlay-boot was installed in $PREFIX before the demo: kept, updated from this checkout."
    echo "To remove it: make -C $PWD uninstall PREFIX=$PREFIX"
  else
    if have_systemd; then
      # the shared services the demo's subhost started run from the files removed next
      systemctl stop overlay-boot-bus.service overlay-boot-net.socket \
        overlay-boot-net.service 2>/dev/null
      systemctl reset-failed "overlay-boot@$NAME.service" 2>/dev/null
    fi
    make -s uninstall PREFIX="$PREFIX"
    if have_systemd; then systemctl daemon-reload; fi
    echo "removed what the demo installed: make uninstall PREFIX=$PREFIX"
  fi
  if [ -n "$left" ]; then
    echo "left in place: $left"
  elif [ "$had_install" = no ]; then
    echo "removed $BASE: the host is as the demo found it."
  else
    echo "removed $BASE."
  fi
  exit "$status"
}
trap clean_up EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

step "install overlay-boot (make install PREFIX=$PREFIX, for Debian's /usr/bin/python3)"
make -s install PREFIX="$PREFIX"

step "a subhost directory: live/ root/ work/ and a config"
mkdir -p "$BASE"/{live,root,work}
chmod 700 "$BASE"  # host users must not reach root/: see overlay-boot.conf(5)
cat > "$BASE/hello" <<'SH'
#!/bin/sh
# A START service: a tiny daemon that answers on the subhost's own loopback.
case "$1" in
  start) setsid python3 -m http.server --bind 127.0.0.1 8080 --directory /etc \
           </dev/null >/run/hello.log 2>&1 & echo $! > /run/hello.pid ;;
  stop)  kill "$(cat /run/hello.pid)" ;;
esac
SH
chmod 0755 "$BASE/hello"
cat > "$BASE/$NAME.conf" <<CONF
# The demo subhost: an overlay of / with its own upper layer in root/.
BASE=.
CABLES= =
START=$BASE/hello
SHARE=$BASE/hello
CONF
chmod 0644 "$BASE/$NAME.conf"
show cat "$BASE/$NAME.conf"

step "start it"
started=yes
show "$SBIN/overlay-boot" "$BASE/$NAME.conf"

step "running subhosts"
show "$SBIN/overlay-go"

step "inside: its own hostname, processes, network and files"
show "$SBIN/overlay-go" "$NAME" -- hostname
show "$SBIN/overlay-go" "$NAME" -- ps -e -o pid,ppid,comm
show "$SBIN/overlay-go" "$NAME" -- ip -br link
show "$SBIN/overlay-go" "$NAME" -- cat /etc/network/interfaces
show "$SBIN/overlay-go" "$NAME" -- python3 -c \
  "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8080/hostname').status)"
show "$SBIN/overlay-go" "$NAME" -- sh -c "echo written inside > /etc/demo-marker"
echo "on the host, /etc/demo-marker exists: $([ -e /etc/demo-marker ] && echo yes || echo no)"
echo "in the subhost's upper layer: $(cat "$BASE/root/etc/demo-marker")"

step "host side: the netns and the host end of the cable"
show ip netns list
show ip -br link show "${NAME}0"

step "stop it"
show "$SBIN/overlay-stop" "$BASE/$NAME.conf"
started=no
printf 'left behind: netns %s, link %s\n' \
  "$([ -e "/run/netns/$NAME" ] && echo yes || echo no)" \
  "$([ -e "/sys/class/net/${NAME}0" ] && echo yes || echo no)"
