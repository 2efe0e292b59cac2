#!/bin/bash
# Build (or reuse) the two trees of the storkeep test host, both cached under
# one recipe key (testhost/README.md):
#   uml/   the kernel: a minimal Debian testing (forky) tree holding
#          user-mode-linux (linux.uml, Linux 7.2) and the C library it needs;
#          run.sh runs linux.uml chrooted into it.
#   root/  the guest: a Debian 12 (bookworm) tree that boots under that
#          kernel with systemd as PID 1 and a real kernel NFS/iSCSI stack,
#          with the kernel's own modules in /lib/modules.
# Why a kernel from testing: the UML of Debian 12 (6.1) and 13 (6.12) dies at
# the first exec of PID 1 on CPUs with AMX ("ptrace set fp regs failed"); the
# one in testing boots on CPUs with and without it.
#
# Usage: testhost/build.sh [--force]
#   Progress goes to stderr; the last line on stdout is the cache directory
#   of the recipe ($DIR/uml, $DIR/root).
#
# Knobs (environment):
#   STORKEEP_CACHE             cache base (default $HOME/.cache/storkeep)
#   STORKEEP_TESTHOST_MIRROR   Debian mirror URI (default: read from apt's sources)
#   STORKEEP_TESTHOST_KEEP_OLD=1  keep cached roots of other recipes
set -euo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
SUITE=bookworm
ARCH=amd64
# The kernel: Debian's user-mode-linux from this suite. It needs glibc >= 2.38,
# hence a tree of its own rather than a package on the (Debian 12) host.
UML_SUITE=forky
UML_PACKAGES=(user-mode-linux)
# Guest packages. Changing this list (or anything else in this file) changes
# the cache key and forces a rebuild.
PACKAGES=(
  systemd-sysv dbus udev kmod procps util-linux iproute2
  nfs-kernel-server nfs-common rpcbind
  open-iscsi tgt
  libglib2.0-bin polkitd libpam-systemd
  e2fsprogs
)
# mmdebstrap rather than debootstrap: apt resolves and downloads in parallel
# and dpkg runs once, with unsafe I/O; a cold build takes half the time.
HOST_PACKAGES=(mmdebstrap debian-archive-keyring)
# Generators a test host never needs (no gettys, LUKS, GPT auto-mounts,
# SysV scripts without units, rc.local...): each is an exec at boot and at
# every daemon-reload (systemctl mask, dpkg -i), and an exec costs 0.1-0.5 s
# in UML. fstab and the NFS ones stay.
MASK_GENERATORS=(
  systemd-cryptsetup-generator systemd-debug-generator systemd-getty-generator
  systemd-gpt-auto-generator systemd-hibernate-resume-generator
  systemd-integritysetup-generator systemd-rc-local-generator systemd-run-generator
  systemd-system-update-generator systemd-sysv-generator systemd-veritysetup-generator
)
# Units a test never needs; masked so boot is short and quiet.
MASK_UNITS=(
  apt-daily.timer apt-daily.service apt-daily-upgrade.timer apt-daily-upgrade.service
  dpkg-db-backup.timer dpkg-db-backup.service
  man-db.timer man-db.service
  e2scrub_all.timer e2scrub_all.service e2scrub_reap.service
  fstrim.timer fstrim.service
  systemd-tmpfiles-clean.timer
  systemd-timesyncd.service
  systemd-networkd-wait-online.service networking.service
  getty.target getty@.service serial-getty@.service console-getty.service getty-static.service
  systemd-hwdb-update.service ldconfig.service
  systemd-pstore.service systemd-binfmt.service
  proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount
  sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount
  dev-hugepages.mount sys-fs-fuse-connections.mount
  nfs-blkmap.service auth-rpcgss-module.service rpc-statd-notify.service
  systemd-update-utmp.service systemd-update-utmp-runlevel.service
  systemd-sysusers.service systemd-random-seed.service systemd-journal-flush.service
  systemd-ask-password-wall.path systemd-ask-password-console.path
)
# Enabled by their packages, but the tests start them themselves (tgtd in a
# network namespace, nfs-server with the exports a test writes). Disabled,
# not masked, so `systemctl start` still works.
# rpcbind stays socket-activated; nfs-client.target only pulls in helpers
# (statd notify, gss) that a mount does not need.
DISABLE_UNITS=(nfs-server.service tgt.service rpcbind.service nfs-client.target)

log() { printf '[testhost/build] %s\n' "$*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b-a}'; }

FORCE=0
[[ "${1:-}" == "--force" ]] && FORCE=1

[[ $(id -u) -eq 0 ]] || { log "must run as root (mmdebstrap, chroot)"; exit 1; }

CACHE="${STORKEEP_CACHE:-$HOME/.cache/storkeep}/testhost"
mkdir -p "$CACHE"
# One build.sh at a time, host packages included: a second caller (run.sh
# while CI builds in the background) waits here, then reuses the root.
exec 9>"$CACHE/.lock"
flock 9

# --- cache key ---------------------------------------------------------------
# The recipe: this file, both suites and both package lists. Which kernel
# version the recipe gave is recorded in the tree (uml/etc/storkeep-testhost-
# kernel) and never looked up again: a cached recipe downloads nothing.
KEY="$( { cat "$SELF"; printf '%s\n' "$SUITE" "$ARCH" "${PACKAGES[@]}" "uml:$UML_SUITE" "${UML_PACKAGES[@]}"; } \
        | sha256sum | cut -c1-16)"
DIR="$CACHE/$KEY"

if [[ -f "$DIR/complete" && $FORCE -eq 0 ]]; then
  log "reusing cached test host $DIR ($(cat "$DIR/uml/etc/storkeep-testhost-kernel" 2>/dev/null))"
  printf '%s\n' "$DIR"
  exit 0
fi

# --- host packages ----------------------------------------------------------
missing=()
for p in "${HOST_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing on the host: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >"$CACHE/apt.log" 2>&1; then
    tail -n 5 "$CACHE/apt.log" >&2
    echo "testhost: cannot install ${missing[*]} on the host with apt (see above); the test host is built with them" >&2
    exit 1
  fi
fi

# --- mirror from apt's own sources --------------------------------------------
find_mirror() {
  local f
  # deb822 (*.sources): a stanza with Types deb, Suites containing bookworm and
  # Components containing main.
  for f in /etc/apt/sources.list.d/*.sources; do
    [[ -f $f ]] || continue
    awk -v suite="$SUITE" '
      function flush() {
        if (types ~ /(^| )deb( |$)/ && (" " suites " ") ~ (" " suite " ") &&
            (" " comps " ") ~ / main / && tolower(enabled) != "no" && uris != "") {
          split(uris, u, " "); print u[1]; found = 1; exit
        }
        types = suites = comps = uris = enabled = ""
      }
      /^[ \t]*#/ { next }
      /^[ \t]*$/ { flush(); next }
      {
        line = $0; key = line; sub(/:.*/, "", key); val = line; sub(/^[^:]*:[ \t]*/, "", val)
        key = tolower(key)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "components") comps = val
        else if (key == "enabled") enabled = val
      }
      END { if (!found) flush() }' "$f"
  done
  # one-line format: deb [opts] URI bookworm main ...
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [[ -f $f ]] || continue
    sed -E 's/\[[^]]*\]//' "$f" | awk -v suite="$SUITE" \
      '$1 == "deb" && $3 == suite { for (i = 4; i <= NF; i++) if ($i == "main") { print $2; exit } }'
  done
}
# The same mirror serves testing: the kernel's tree comes from it too.
MIRROR="${STORKEEP_TESTHOST_MIRROR:-$(find_mirror | head -n1)}"
[[ -n "$MIRROR" ]] || { log "no '$SUITE main' source found in apt's sources; set STORKEEP_TESTHOST_MIRROR"; exit 1; }

# --- build into a temp dir, rename when complete -------------------------------
t0=$(now)
rm -rf "$CACHE"/.tmp-* 2>/dev/null || true   # leftovers of killed builds (we hold the lock)
TMP="$(mktemp -d "$CACHE/.tmp-$KEY-XXXXXX")"
ROOT="$TMP/root"
UML="$TMP/uml"
UML_PID=""
cleanup() {
  [[ -z "$UML_PID" ]] || kill "$UML_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

keyring=()
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
# Docs, man pages and locales are never unpacked; dpkg skips fsync (the trees
# are renamed into place only when complete).
slim=(--dpkgopt=force-unsafe-io
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*'
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*')

# The kernel's tree, built beside the guest's (both mostly wait on downloads).
# Testing is a moving suite: the mirror may serve a snapshot whose Release
# file is past its Valid-Until date, which says nothing about its packages.
log "mmdebstrap $UML_SUITE (essential + ${UML_PACKAGES[*]}) for the kernel into $UML"
mmdebstrap --mode=root --variant=essential --arch="$ARCH" --components=main "${keyring[@]}" \
  --aptopt='Acquire::Check-Valid-Until "false"' "${slim[@]}" \
  --include="$(IFS=,; echo "${UML_PACKAGES[*]}")" "$UML_SUITE" "$UML" "$MIRROR" \
  >"$TMP/mmdebstrap-uml.log" 2>&1 &
UML_PID=$!

log "mmdebstrap $SUITE ($ARCH) from apt's $SUITE main source into $ROOT"
include="$(IFS=,; echo "${PACKAGES[*]}")"
# merged-usr: /bin, /lib... as symlinks into /usr, as debootstrap makes
# them (usr-is-merged, not the usrmerge converter).
if ! mmdebstrap --mode=root --variant=minbase --arch="$ARCH" --components=main "${keyring[@]}" \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr "${slim[@]}" \
      --include="$include" "$SUITE" "$ROOT" "$MIRROR" >"$TMP/mmdebstrap.log" 2>&1; then
  tail -n 40 "$TMP/mmdebstrap.log" >&2
  log "mmdebstrap $SUITE failed"
  exit 1
fi
# The guest's own dpkg (dpkg -i storkeep.deb) runs with Debian's defaults.
rm -f "$ROOT/etc/dpkg/dpkg.cfg.d/99mmdebstrap"
log "guest tree done in $(elapsed "$t0") s"
if ! wait "$UML_PID"; then
  UML_PID=""
  tail -n 40 "$TMP/mmdebstrap-uml.log" >&2
  log "mmdebstrap $UML_SUITE (the kernel's tree) failed"
  exit 1
fi
UML_PID=""
log "kernel tree done in $(elapsed "$t0") s"

# --- the kernel ----------------------------------------------------------------
UML_VERSION="$(dpkg-query --admindir="$UML/var/lib/dpkg" -W -f='${Version}' user-mode-linux)"
shopt -s nullglob
moddirs=("$UML"/usr/lib/uml/modules/*/)
shopt -u nullglob
((${#moddirs[@]} == 1)) || { log "expected one dir in the kernel tree's /usr/lib/uml/modules, found ${#moddirs[@]}"; exit 1; }
KVER="$(basename "${moddirs[0]}")"
printf 'user-mode-linux %s (Linux %s) from %s\n' "$UML_VERSION" "$KVER" "$UML_SUITE" \
  >"$UML/etc/storkeep-testhost-kernel"
rm -f "$UML/etc/dpkg/dpkg.cfg.d/99mmdebstrap"
# Mount points run.sh uses inside the kernel's tree: hostfs paths are
# resolved by the UML process, so the guest root and the shared directories
# must be visible from inside its chroot.
mkdir -p "$UML/storkeep/guest" "$UML/storkeep/share" "$UML/storkeep/out"
# The preflight's init: proves the kernel starts a process on this host (the
# AMX failure kills the first exec), then powers off (reboot(2),
# LINUX_REBOOT_CMD_POWER_OFF). perl is in every essential tree.
cat >"$UML/storkeep/preflight-init" <<'EOF'
#!/usr/bin/perl
print "storkeep-testhost-preflight: init runs\n";
syscall(169, 0xfee1dead, 672274793, 0x4321fedc, 0);
sleep 10;
EOF
chmod 755 "$UML/storkeep/preflight-init"

# The guest gets the kernel's modules (hard links: same file system).
mkdir -p "$ROOT/lib/modules"
cp -al "${moddirs[0]%/}" "$ROOT/lib/modules/"
chroot "$ROOT" depmod -a "$KVER"
# Identity.
echo storkeep-testhost >"$ROOT/etc/hostname"
cat >"$ROOT/etc/hosts" <<'EOF'
127.0.0.1	localhost
127.0.1.1	storkeep-testhost
::1	localhost ip6-localhost ip6-loopback
EOF
# A fixed machine-id: an empty one would make systemd treat every boot as the
# first and run preset-all, re-enabling the units disabled below.
sha256sum <<<"storkeep-testhost-$KEY" | cut -c1-32 >"$ROOT/etc/machine-id"
printf '# storkeep test host: the root is hostfs, nothing else is mounted at boot\n' >"$ROOT/etc/fstab"
printf 'InitiatorName=iqn.2024-01.org.storkeep:testhost\n' >"$ROOT/etc/iscsi/initiatorname.iscsi"
chroot "$ROOT" passwd -d root >/dev/null
chroot "$ROOT" useradd -m -u 1000 -U -s /bin/bash tester

# systemd tuning.
for u in "${MASK_UNITS[@]}"; do ln -sfn /dev/null "$ROOT/etc/systemd/system/$u"; done
mkdir -p "$ROOT/etc/systemd/system-generators"
for g in "${MASK_GENERATORS[@]}"; do ln -sfn /dev/null "$ROOT/etc/systemd/system-generators/$g"; done
for u in "${DISABLE_UNITS[@]}"; do
  find "$ROOT/etc/systemd/system" -name "$u" -type l -delete
done
mkdir -p "$ROOT/etc/systemd/system.conf.d" "$ROOT/etc/systemd/journald.conf.d"
cat >"$ROOT/etc/systemd/system.conf.d/storkeep-testhost.conf" <<'EOF'
[Manager]
DefaultTimeoutStopSec=10s
EOF
# Coldplug without the ~600 UML tty devices: every event costs tens of ms in
# UML, and no test needs their permissions fixed.
mkdir -p "$ROOT/etc/systemd/system/systemd-udev-trigger.service.d"
cat >"$ROOT/etc/systemd/system/systemd-udev-trigger.service.d/storkeep-testhost.conf" <<'EOF'
[Service]
ExecStart=
ExecStart=-udevadm trigger --type=all --action=add --prioritized-subsystem=module,block,net --subsystem-nomatch=tty
EOF
cat >"$ROOT/etc/systemd/journald.conf.d/storkeep-testhost.conf" <<'EOF'
[Journal]
Storage=volatile
EOF

# Slim the tree: it is copied for every run.
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/lib/apt/lists/* \
       "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* "$ROOT"/usr/share/locale/* \
       "$ROOT"/usr/share/info/* "$ROOT"/var/log/journal
printf 'key=%s\numl=%s\nkver=%s\numl_suite=%s\nsuite=%s\nbuilt=%s\n' \
  "$KEY" "$UML_VERSION" "$KVER" "$UML_SUITE" "$SUITE" "$(date -u +%FT%TZ)" \
  >"$ROOT/etc/storkeep-testhost-build"

rm -rf "$DIR"
mkdir -p "$DIR"
mv "$UML" "$DIR/uml"
mv "$ROOT" "$DIR/root"
touch "$DIR/complete"
log "built $DIR in $(elapsed "$t0") s (guest $(du -sh "$DIR/root" | cut -f1), kernel tree $(du -sh "$DIR/uml" | cut -f1); $(cat "$DIR/uml/etc/storkeep-testhost-kernel"))"

if [[ "${STORKEEP_TESTHOST_KEEP_OLD:-0}" != 1 ]]; then
  for d in "$CACHE"/*/; do
    d="${d%/}"
    [[ "${d##*/}" =~ ^[0-9a-f]{16}$ && "${d##*/}" != "$KEY" ]] || continue
    log "removing the cached test host of an older recipe: $d"
    rm -rf "$d"
  done
fi
printf '%s\n' "$DIR"
