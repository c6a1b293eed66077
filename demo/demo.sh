#!/bin/bash
# A demo subhost: install overlay-boot, start a subhost with a cable and one service, look
# at it from inside, stop it, and show that nothing is left. Run as root (`make demo`).
set -euo pipefail
cd "$(dirname "$0")/.."

NAME=${DEMO_NAME:-obdemo}
BASE=${DEMO_BASE:-/var/lib/overlay-boot-demo}
SBIN=${DEMO_SBIN:-/usr/local/sbin}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
show() { printf '$ %s\n' "$*"; "$@"; }

step "install overlay-boot (make install, for Debian's /usr/bin/python3)"
make -s install

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
show "$SBIN/overlay-boot" "$BASE/$NAME.conf"
trap '"$SBIN/overlay-stop" "$BASE/$NAME.conf" >/dev/null 2>&1 || true' EXIT

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
trap - EXIT
show "$SBIN/overlay-stop" "$BASE/$NAME.conf"
printf 'left behind: netns %s, link %s\n' \
  "$([ -e "/run/netns/$NAME" ] && echo yes || echo no)" \
  "$([ -e "/sys/class/net/${NAME}0" ] && echo yes || echo no)"
echo "(the subhost's files stay in $BASE/root; remove $BASE to forget it)"
