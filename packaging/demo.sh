#!/usr/bin/env bash
# A walk through storkeep on a private D-Bus bus: `make demo` runs it after
# `make build`. It needs nothing from the host but dbus-daemon (installed
# with apt when missing and run as root); no systemd, NFS server or iSCSI
# target. Connections therefore never come up, and the demo shows how
# storkeep reports that.
#
# Everything it starts is stopped on exit, and its temporary directory is
# removed.
#
# Environment: BIN (default: bin/ of the repository) holds storkeepd and
# storkeepctl.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
BIN=${BIN:-$top/bin}

for b in storkeepd storkeepctl; do
	if [ ! -x "$BIN/$b" ]; then
		echo "demo: $BIN/$b is missing: run 'make build' first" >&2
		exit 1
	fi
done

step=0
header() {
	step=$((step + 1))
	printf '\n=== %d. %s\n' "$step" "$*"
}

# need CMD PKG: install Debian package PKG when CMD is missing. Fails only
# when it cannot install.
need() {
	command -v "$1" >/dev/null 2>&1 && return 0
	if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
		echo "demo: $1 is missing; install the Debian package $2" >&2
		return 1
	fi
	echo "demo: installing $2 (for $1)"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
}

need dbus-daemon dbus
need dbus-send dbus
have_busctl=yes
need busctl systemd || have_busctl=no

tmp=$(mktemp -d "${TMPDIR:-/tmp}/storkeep-demo.XXXXXX")
bus_pid=
daemon_pid=
monitor_pid=

cleanup() {
	local rc=$?
	set +e
	for pid in "$monitor_pid" "$daemon_pid" "$bus_pid"; do
		[ -n "$pid" ] || continue
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 50); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	# --one-file-system: never reach into anything mounted below.
	rm -rf --one-file-system "$tmp"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

sock=$tmp/bus
addr=unix:path=$sock

# The bus. As root it is a small copy of the system bus: its default
# policy, plus storkeep's own policy file, so the demo also proves that file.
# Otherwise the bus lets anyone own any name, as a session bus does.
if [ "$(id -u)" -eq 0 ]; then
	policy="
  <policy context=\"default\">
    <allow user=\"*\"/>
    <deny own=\"*\"/>
    <deny send_type=\"method_call\"/>
    <allow send_type=\"signal\"/>
    <allow send_requested_reply=\"true\" send_type=\"method_return\"/>
    <allow send_requested_reply=\"true\" send_type=\"error\"/>
    <allow receive_type=\"method_call\"/>
    <allow receive_type=\"method_return\"/>
    <allow receive_type=\"error\"/>
    <allow receive_type=\"signal\"/>
    <allow send_destination=\"org.freedesktop.DBus\" send_interface=\"org.freedesktop.DBus\"/>
    <allow send_destination=\"org.freedesktop.DBus\" send_interface=\"org.freedesktop.DBus.Introspectable\"/>
    <allow send_destination=\"org.freedesktop.DBus\" send_interface=\"org.freedesktop.DBus.Properties\"/>
  </policy>
  <include>$here/org.storkeep.StorKeep1.conf</include>"
	bus_kind="system-like bus with packaging/org.storkeep.StorKeep1.conf"
else
	policy="
  <policy context=\"default\">
    <allow send_destination=\"*\" eavesdrop=\"true\"/>
    <allow eavesdrop=\"true\"/>
    <allow own=\"*\"/>
  </policy>"
	bus_kind="session-like bus (not root: the system policy file is not used)"
fi
cat >"$tmp/bus.conf" <<EOF
<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-BUS Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>$addr</listen>
  <auth>EXTERNAL</auth>
$policy
</busconfig>
EOF

header "Start a private D-Bus bus: $bus_kind"
dbus-daemon --config-file="$tmp/bus.conf" --nofork --nopidfile --nosyslog 2>"$tmp/bus.log" &
bus_pid=$!
for _ in $(seq 100); do
	[ -S "$sock" ] && break
	sleep 0.05
done
if ! dbus-send --bus="$addr" --print-reply --dest=org.freedesktop.DBus / org.freedesktop.DBus.GetId >/dev/null; then
	echo "demo: the bus did not start; its log:" >&2
	cat "$tmp/bus.log" >&2
	exit 1
fi
echo "bus at $addr (pid $bus_pid)"

ctl() {
	echo "\$ storkeepctl $*"
	DBUS_SYSTEM_BUS_ADDRESS=$addr "$BIN/storkeepctl" --bus "$addr" "$@"
}

header "Start storkeepd on it"
mkdir -p "$tmp/state" "$tmp/run"
cp "$here/storkeep.toml" "$tmp/storkeep.toml"
# DBUS_SYSTEM_BUS_ADDRESS points at the private bus too, so that storkeepd
# cannot reach a real systemd through the system bus and mount anything.
DBUS_SYSTEM_BUS_ADDRESS=$addr "$BIN/storkeepd" --bus "$addr" --state-dir "$tmp/state" --runtime-dir "$tmp/run" \
	--config "$tmp/storkeep.toml" 2>"$tmp/storkeepd.log" &
daemon_pid=$!
ready=no
for _ in $(seq 100); do
	if ! kill -0 "$daemon_pid" 2>/dev/null; then
		break
	fi
	if dbus-send --bus="$addr" --print-reply --dest=org.freedesktop.DBus / \
		org.freedesktop.DBus.NameHasOwner string:org.storkeep.StorKeep1 2>/dev/null |
		grep -q 'boolean true'; then
		ready=yes
		break
	fi
	sleep 0.1
done
if [ "$ready" != yes ]; then
	if kill -0 "$daemon_pid" 2>/dev/null; then
		echo "demo: storkeepd did not take org.storkeep.StorKeep1 within 10s; its log:" >&2
	else
		echo "demo: storkeepd exited before it took org.storkeep.StorKeep1; its log:" >&2
	fi
	cat "$tmp/storkeepd.log" >&2
	exit 1
fi
echo "storkeepd (pid $daemon_pid) owns org.storkeep.StorKeep1"

nfs=nfs://127.0.0.1/srv/export
iscsi=iscsi://127.0.0.1/iqn.2026-01.org.storkeep:demo/1

header "Manage one NFS export under two CIDs (one real connection)"
ctl manage "$nfs" vm1-disk
ctl manage "$nfs" vm2-disk

header "Manage an iSCSI LUN under one CID"
ctl manage "$iscsi" vm3-lun

header "List every managed CID"
ctl list

header "The objects on the bus"
if [ "$have_busctl" = yes ]; then
	echo "\$ busctl --address=$addr tree org.storkeep.StorKeep1"
	busctl --address="$addr" tree org.storkeep.StorKeep1
else
	echo "(busctl is missing: skipped)"
fi

header "Watch signals in the background (lines start with [monitor])"
echo "\$ storkeepctl monitor &"
# $! is timeout's pid: killing it stops storkeepctl, and sed ends with it.
DBUS_SYSTEM_BUS_ADDRESS=$addr timeout 60 "$BIN/storkeepctl" --bus "$addr" monitor \
	> >(sed -u 's/^/[monitor] /') 2>&1 &
monitor_pid=$!
sleep 1

header "Wait for vm1-disk to connect (no NFS server here: it fails and says why)"
if ctl wait vm1-disk --timeout 3s; then
	echo "vm1-disk is connected"
else
	echo "wait failed, as expected on this host. The last error of vm1-disk:"
	ctl show vm1-disk | grep -i 'error' || true
fi

header "Show one CID"
ctl show vm1-disk

header "Unmanage one CID (the export stays in use by vm2-disk)"
ctl unmanage vm1-disk

header "Unmanage by prefix"
ctl unmanage --prefix vm

header "List again"
ctl list
sleep 1

header "Stop the monitor, storkeepd and the bus"
kill -TERM "$monitor_pid" 2>/dev/null || true
wait "$monitor_pid" 2>/dev/null || true
monitor_pid=
kill -TERM "$daemon_pid"
daemon_status=0
wait "$daemon_pid" || daemon_status=$?
daemon_pid=
echo "storkeepd exited with status $daemon_status. Its log:"
sed 's/^/  /' "$tmp/storkeepd.log"
echo
echo "demo done"
