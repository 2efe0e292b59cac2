#!/usr/bin/env bash
# Build the storkeep .deb for the host architecture with nothing but Go and
# dpkg-deb.
#
# Usage: packaging/build-deb.sh VERSION OUTDIR
#
# VERSION is what `git describe --tags --always --dirty` prints (a leading
# "v" is dropped). The binaries report it as it is, and the package version
# is a valid Debian form of it. The .deb is written into OUTDIR and its path
# is printed on the last line.
#
# Environment:
#   GO      the go command (default: go)
#   BINDIR  take storkeepd and storkeepctl from this directory instead of
#           building them (for example bin/ after `make build`)
set -euo pipefail

if [ "$#" -ne 2 ]; then
	echo "usage: $0 VERSION OUTDIR" >&2
	exit 2
fi
version=$1
outdir=$2
GO=${GO:-go}

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
top=$(cd "$here/.." && pwd)
mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)

# deb_version turns a git describe string into a Debian version:
#   v1.2.0                  -> 1.2.0
#   v1.2.0-3-gabc1234-dirty -> 1.2.0+3+gabc1234+dirty
#   0.1.0~dev               -> 0.1.0~dev
#   abc1234 (no tag)        -> 0~git.abc1234
deb_version() {
	local v=${1#v}
	v=${v//-/+}
	# A tag looks like 1.2 or 1.2.3; anything else (a bare commit hash,
	# which may well start with a digit) is no release.
	if ! [[ $v =~ ^[0-9]+\.[0-9] ]]; then
		v="0~git.$v"
	fi
	if ! [[ $v =~ ^[0-9][A-Za-z0-9.+~]*$ ]]; then
		echo "build-deb: cannot make a Debian version of '$1'" >&2
		return 1
	fi
	printf '%s\n' "$v"
}

pkgversion=$(deb_version "$version")
arch=$(dpkg --print-architecture)

# goarch maps a Debian architecture to GOARCH (and GOARM for armhf).
goarm=
case $arch in
amd64) goarch=amd64 ;;
arm64) goarch=arm64 ;;
armhf) goarch=arm goarm=7 ;;
armel) goarch=arm goarm=5 ;;
i386) goarch=386 ;;
ppc64el) goarch=ppc64le ;;
s390x) goarch=s390x ;;
riscv64) goarch=riscv64 ;;
mips64el) goarch=mips64le ;;
*)
	echo "build-deb: no GOARCH known for Debian architecture $arch" >&2
	exit 1
	;;
esac

work=$(mktemp -d "${TMPDIR:-/tmp}/storkeep-deb.XXXXXX")
trap 'rm -rf "$work"' EXIT
root=$work/root

install -d -m 0755 \
	"$root/DEBIAN" \
	"$root/usr/sbin" \
	"$root/usr/bin" \
	"$root/lib/systemd/system" \
	"$root/usr/share/dbus-1/system.d" \
	"$root/usr/share/dbus-1/system-services" \
	"$root/usr/share/polkit-1/actions" \
	"$root/etc/storkeep" \
	"$root/usr/share/doc/storkeep"

# Binaries.
if [ -n "${BINDIR:-}" ]; then
	echo "build-deb: taking binaries from $BINDIR" >&2
	install -m 0755 "$BINDIR/storkeepd" "$root/usr/sbin/storkeepd"
	install -m 0755 "$BINDIR/storkeepctl" "$root/usr/bin/storkeepctl"
else
	echo "build-deb: building $version for $arch (GOARCH=$goarch)" >&2
	(
		cd "$top"
		export CGO_ENABLED=0 GOOS=linux GOARCH="$goarch"
		if [ -n "$goarm" ]; then export GOARM="$goarm"; fi
		ldflags="-s -w -X main.version=$version"
		"$GO" build -trimpath -ldflags "$ldflags" -o "$work/storkeepd" ./cmd/storkeepd
		"$GO" build -trimpath -ldflags "$ldflags" -o "$work/storkeepctl" ./cmd/storkeepctl
	)
	install -m 0755 "$work/storkeepd" "$root/usr/sbin/storkeepd"
	install -m 0755 "$work/storkeepctl" "$root/usr/bin/storkeepctl"
fi

# Configuration, units, bus files and polkit actions.
install -m 0644 "$here/storkeepd.service" "$root/lib/systemd/system/storkeepd.service"
# Boot ordering: what a VM's unit or libvirt-guests.service orders itself
# after (static units: pulled in by what needs them, never enabled).
install -m 0644 "$here/storkeep-wait-online.service" "$root/lib/systemd/system/storkeep-wait-online.service"
install -m 0644 "$here/storkeep-wait-online@.service" "$root/lib/systemd/system/storkeep-wait-online@.service"
install -m 0644 "$here/org.storkeep.StorKeep1.conf" "$root/usr/share/dbus-1/system.d/org.storkeep.StorKeep1.conf"
install -m 0644 "$here/org.storkeep.StorKeep1.service" "$root/usr/share/dbus-1/system-services/org.storkeep.StorKeep1.service"
install -m 0644 "$here/storkeep.toml" "$root/etc/storkeep/storkeep.toml"
# polkit reads its actions from here; without polkit the file is inert and
# only root may change anything.
install -m 0644 "$here/org.storkeep.StorKeep1.policy" "$root/usr/share/polkit-1/actions/org.storkeep.StorKeep1.policy"

# Examples for admins and client authors: a polkit rule that delegates a
# CID prefix, a libvirt-guests drop-in, and D-Bus clients in Python and Go.
examples=(
	50-storkeep-prefix.rules
	libvirt-guests-storkeep.conf
	python/storkeep_client.py
	go/vmstorage/main.go
)
for f in "${examples[@]}"; do
	install -D -m 0644 "$here/examples/$f" "$root/usr/share/doc/storkeep/examples/$f"
done

# Copyright: the project's LICENSE when it has one.
{
	cat <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: storkeep
Source: https://github.com/storkeep/storkeep

Files: *
Copyright: the storkeep developers
EOF
	if [ -f "$top/LICENSE" ]; then
		echo "License: see below"
		sed -e 's/^$/./' -e 's/^/ /' "$top/LICENSE"
	else
		echo "License: none declared yet"
		echo " The project has not chosen a license yet."
	fi
} >"$root/usr/share/doc/storkeep/copyright"
chmod 0644 "$root/usr/share/doc/storkeep/copyright"

installed_size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)

cat >"$root/DEBIAN/control" <<EOF
Package: storkeep
Version: $pkgversion
Architecture: $arch
Maintainer: storkeep developers <storkeep@localhost>
Installed-Size: $installed_size
Depends: dbus, systemd
Recommends: nfs-common, open-iscsi
Suggests: polkitd
Section: admin
Priority: optional
Homepage: https://github.com/storkeep/storkeep
Description: keeps NFS and iSCSI storage connections alive
 storkeepd connects NFS exports and iSCSI targets on request of its clients
 and keeps them connected: it watches the links, reconnects with backoff
 and reports each connection's state. Clients name each use of a
 connection with a connection ID (CID); connections shared by several CIDs
 are made once and torn down when the last CID lets go.
 .
 The daemon serves a D-Bus API on the system bus as org.storkeep.StorKeep1;
 storkeepctl is its command-line client.
EOF

cat >"$root/DEBIAN/conffiles" <<'EOF'
/etc/storkeep/storkeep.toml
EOF

# Maintainer scripts. They follow what dh_installsystemd generates, with a
# fallback to plain systemctl where init-system-helpers is missing.
cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e

unit=storkeepd.service

case "$1" in
configure|abort-upgrade|abort-deconfigure|abort-remove)
	# Make the bus load the new policy before the daemon asks for its name.
	# (dbus-daemon also notices new files by itself, but not always at once.)
	if [ -d /run/systemd/system ] && systemctl --quiet is-active dbus.service 2>/dev/null; then
		systemctl reload dbus.service >/dev/null 2>&1 || true
	elif [ -S /run/dbus/system_bus_socket ] && command -v dbus-send >/dev/null 2>&1; then
		dbus-send --system --print-reply --type=method_call \
			--dest=org.freedesktop.DBus / org.freedesktop.DBus.ReloadConfig \
			>/dev/null 2>&1 || true
	fi

	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null 2>&1 || true
	fi

	# Enable on first install; keep the admin's choice on upgrades.
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper unmask "$unit" >/dev/null || true
		if deb-systemd-helper --quiet was-enabled "$unit"; then
			deb-systemd-helper enable "$unit" >/dev/null || true
		else
			deb-systemd-helper update-state "$unit" >/dev/null || true
		fi
	elif [ -z "$2" ]; then
		systemctl enable "$unit" >/dev/null 2>&1 || true
	fi

	# Start on first install; on upgrade restart it only if it runs.
	# Restarting never unmounts or logs out anything.
	if [ -d /run/systemd/system ]; then
		if [ -n "$2" ]; then action=try-restart; else action=start; fi
		if command -v deb-systemd-invoke >/dev/null 2>&1; then
			deb-systemd-invoke "$action" "$unit" >/dev/null || true
		else
			systemctl "$action" "$unit" >/dev/null || true
		fi
	fi
	;;
esac

exit 0
EOF

cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e

unit=storkeepd.service

# Stop the daemon on remove only. An upgrade leaves it running and postinst
# restarts it. Stopping leaves every mount and iSCSI session as it is:
# unmanage the CIDs first to tear connections down.
case "$1" in
remove)
	if [ -d /run/systemd/system ]; then
		if command -v deb-systemd-invoke >/dev/null 2>&1; then
			deb-systemd-invoke stop "$unit" >/dev/null || true
		else
			systemctl stop "$unit" >/dev/null 2>&1 || true
		fi
	fi
	if ! command -v deb-systemd-helper >/dev/null 2>&1; then
		systemctl disable "$unit" >/dev/null 2>&1 || true
	fi
	;;
esac

exit 0
EOF

cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e

unit=storkeepd.service
state=/var/lib/storkeep
runtime=/run/storkeep

# connections_may_exist succeeds when something storkeep may have set up
# could still be there: a file system mounted under /run/storkeep, or any
# iSCSI session at all (which sessions are storkeep's is written only in
# its state).
connections_may_exist() {
	if awk -v dir="$runtime" '$5 == dir || index($5, dir "/") == 1 { found = 1 } END { exit !found }' \
		/proc/self/mountinfo 2>/dev/null; then
		return 0
	fi
	for s in /sys/class/iscsi_session/session*; do
		[ -e "$s" ] && return 0
	done
	return 1
}

case "$1" in
remove)
	if [ -d /run/systemd/system ]; then
		systemctl --system daemon-reload >/dev/null 2>&1 || true
	fi
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper mask "$unit" >/dev/null || true
	fi
	;;
purge)
	if command -v deb-systemd-helper >/dev/null 2>&1; then
		deb-systemd-helper purge "$unit" >/dev/null || true
		deb-systemd-helper unmask "$unit" >/dev/null || true
	fi
	# /var/lib/storkeep records which CIDs own which mounts and sessions.
	# Purge deletes it only when nothing it could describe is still
	# connected. Otherwise the mounts and sessions would be left with no
	# record of who owns them, so purge keeps it and says so.
	if connections_may_exist; then
		echo "storkeep: mounts under $runtime or iSCSI sessions remain;" >&2
		echo "storkeep: keeping $state and $runtime. Remove them by hand once they are gone." >&2
	else
		rm -rf --one-file-system "$state" "$runtime"
	fi
	;;
esac

if [ "$1" = remove ] || [ "$1" = purge ]; then
	# Drop the bus policy now (dbus-daemon also notices by itself).
	if [ -d /run/systemd/system ] && systemctl --quiet is-active dbus.service 2>/dev/null; then
		systemctl reload dbus.service >/dev/null 2>&1 || true
	fi
fi

exit 0
EOF

chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"
chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/conffiles"

deb=$outdir/storkeep_${pkgversion}_${arch}.deb
dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >&2
echo "$deb"
