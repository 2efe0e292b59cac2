#!/bin/bash
# Build (or reuse) the root directory of the storkeep test host: a Debian 12
# (bookworm) tree that boots under User-mode Linux with systemd as PID 1 and a
# real kernel NFS/iSCSI stack. See testhost/README.md.
#
# Usage: testhost/build.sh [--force]
#   Progress goes to stderr; the last line on stdout is the root directory.
#
# Knobs (environment):
#   STORKEEP_CACHE             cache base (default $HOME/.cache/storkeep)
#   STORKEEP_TESTHOST_MIRROR   Debian mirror URI (default: read from apt's sources)
#   STORKEEP_TESTHOST_KEEP_OLD=1  keep cached roots of other recipes
set -euo pipefail

SELF="$(readlink -f "${BASH_SOURCE[0]}")"
SUITE=bookworm
ARCH=amd64
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
HOST_PACKAGES=(user-mode-linux mmdebstrap debian-archive-keyring)
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

# --- host packages ----------------------------------------------------------
missing=()
for p in "${HOST_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing on the host: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

UML_VERSION="$(dpkg-query -W -f='${Version}' user-mode-linux)"
shopt -s nullglob
moddirs=(/usr/lib/uml/modules/*/)
shopt -u nullglob
((${#moddirs[@]} == 1)) || { log "expected one dir in /usr/lib/uml/modules, found ${#moddirs[@]}"; exit 1; }
KVER="$(basename "${moddirs[0]}")"

# --- cache key ---------------------------------------------------------------
KEY="$( { cat "$SELF"; printf '%s\n' "$SUITE" "$ARCH" "${PACKAGES[@]}" "uml=$UML_VERSION" "kver=$KVER"; } \
        | sha256sum | cut -c1-16)"
FINAL="$CACHE/$KEY/root"

if [[ -f "$CACHE/$KEY/complete" && $FORCE -eq 0 ]]; then
  log "reusing cached root $FINAL (key $KEY, user-mode-linux $UML_VERSION)"
  printf '%s\n' "$FINAL"
  exit 0
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
MIRROR="${STORKEEP_TESTHOST_MIRROR:-$(find_mirror | head -n1)}"
[[ -n "$MIRROR" ]] || { log "no '$SUITE main' source found in apt's sources; set STORKEEP_TESTHOST_MIRROR"; exit 1; }

# --- build into a temp dir, rename when complete -------------------------------
t0=$(now)
rm -rf "$CACHE"/.tmp-* 2>/dev/null || true   # leftovers of killed builds (we hold the lock)
TMP="$(mktemp -d "$CACHE/.tmp-$KEY-XXXXXX")"
ROOT="$TMP/root"
cleanup() { rm -rf "$TMP"; }
trap cleanup EXIT

log "mmdebstrap $SUITE ($ARCH) from apt's $SUITE main source into $ROOT"
include="$(IFS=,; echo "${PACKAGES[*]}")"
keyring=()
[[ -f /usr/share/keyrings/debian-archive-keyring.gpg ]] && keyring=(--keyring=/usr/share/keyrings/debian-archive-keyring.gpg)
# merged-usr: /bin, /lib... as symlinks into /usr, as debootstrap makes
# them (usr-is-merged, not the usrmerge converter). Docs, man pages and
# locales are never unpacked; dpkg skips fsync (the tree is renamed into
# place only when complete).
if ! mmdebstrap --mode=root --variant=minbase --arch="$ARCH" --components=main "${keyring[@]}" \
      --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
      --dpkgopt=force-unsafe-io \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
      --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/info/*' \
      --include="$include" "$SUITE" "$ROOT" "$MIRROR" >"$TMP/mmdebstrap.log" 2>&1; then
  tail -n 40 "$TMP/mmdebstrap.log" >&2
  log "mmdebstrap failed"
  exit 1
fi
# The guest's own dpkg (dpkg -i storkeep.deb) runs with Debian's defaults.
rm -f "$ROOT/etc/dpkg/dpkg.cfg.d/99mmdebstrap"
log "mmdebstrap done in $(elapsed "$t0") s"

# Kernel modules of the UML kernel.
mkdir -p "$ROOT/lib/modules"
cp -a "/usr/lib/uml/modules/$KVER" "$ROOT/lib/modules/"
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
printf 'key=%s\numl=%s\nkver=%s\nsuite=%s\nbuilt=%s\n' "$KEY" "$UML_VERSION" "$KVER" "$SUITE" "$(date -u +%FT%TZ)" \
  >"$ROOT/etc/storkeep-testhost-build"

rm -rf "${CACHE:?}/$KEY"
mkdir -p "$CACHE/$KEY"
mv "$ROOT" "$FINAL"
touch "$CACHE/$KEY/complete"
log "built $FINAL in $(elapsed "$t0") s ($(du -sh "$FINAL" | cut -f1))"

if [[ "${STORKEEP_TESTHOST_KEEP_OLD:-0}" != 1 ]]; then
  for d in "$CACHE"/*/; do
    d="${d%/}"
    [[ "${d##*/}" =~ ^[0-9a-f]{16}$ && "${d##*/}" != "$KEY" ]] || continue
    log "removing cached root of an older recipe: $d"
    rm -rf "$d"
  done
fi
printf '%s\n' "$FINAL"
