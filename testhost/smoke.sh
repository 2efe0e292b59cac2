#!/bin/bash
# Smoke test of the storkeep test host; runs INSIDE the guest:
#   testhost/run.sh testhost/smoke.sh [OUTDIR]
# Proves the kernel and systemd facts the e2e tests rely on: systemd as PID 1,
# the system bus, NFSv4.2 served by kernel nfsd in a network namespace behind
# a veth pair, NFSv3 from the guest's own nfsd over loopback (both mounted via
# transient systemd mount units), and an iSCSI login to tgtd in the namespace.
# All addresses live inside the guest. Prints PASS/FAIL per step, exits
# non-zero if any step failed.
set -uo pipefail

IQN=iqn.2024-01.org.storkeep:smoke
NS=stor
HOST_IP=10.250.0.1
NS_IP=10.250.0.2
PASSED=0
STEP_OUT="$(mktemp)"
FAILED=0

now() { date +%s.%N; }
step() {
  local name="$1"; shift
  local t0 rc out
  t0=$(now)
  # A subshell with errexit: a step fails at its first failing command.
  ( set -e; "$@" ) >"$STEP_OUT" 2>&1
  rc=$?
  out="$(cat "$STEP_OUT")"
  if ((rc == 0)); then
    PASSED=$((PASSED + 1))
    printf 'PASS %-34s %6.1fs\n' "$name" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN{print b-a}')"
    if [[ -n "${STORKEEP_E2E_VERBOSE:-}" && -n "$out" ]]; then sed 's/^/     | /' <<<"$out"; fi
  else
    FAILED=$((FAILED + 1))
    printf 'FAIL %-34s %6.1fs (exit %d)\n' "$name" "$(awk -v a="$t0" -v b="$(now)" 'BEGIN{print b-a}')" "$rc"
    sed 's/^/     | /' <<<"$out"
  fi
  return 0
}
# wait_for SECONDS CMD...: retry CMD every 0.2 s until it succeeds
wait_for() {
  local deadline=$(($(date +%s) + $1)); shift
  until "$@"; do
    (($(date +%s) < deadline)) || return 1
    sleep 0.2
  done
}

# --- systemd and D-Bus ------------------------------------------------------------
pid1_is_systemd() {
  local exe; exe="$(readlink /proc/1/exe)"
  echo "PID 1: $exe"
  [[ "$exe" == */systemd ]]
}
system_running() {
  local st
  st="$(timeout 300 systemctl is-system-running --wait)"
  echo "state: $st"
  if [[ "$st" == degraded ]]; then systemctl --failed --no-pager --plain; fi
  [[ "$st" == running || "$st" == degraded ]]
}
system_bus() {
  local names; names="$(busctl --system --no-pager list)"
  grep -q '^org.freedesktop.systemd1 ' <<<"$names" || { echo "systemd1 not on the bus"; return 1; }
  busctl --system get-property org.freedesktop.systemd1 /org/freedesktop/systemd1 \
    org.freedesktop.systemd1.Manager Version
  gdbus call --system --dest org.freedesktop.DBus --object-path /org/freedesktop/DBus \
    --method org.freedesktop.DBus.GetId
}

# --- kernel modules and the network namespace -----------------------------------
load_modules() {
  modprobe -a nfs nfsv3 nfsv4 nfsd iscsi_tcp veth
  for m in nfs nfsv3 nfsv4 nfsd iscsi_tcp veth; do
    grep -q "^$m " /proc/modules || { echo "$m not loaded"; return 1; }
  done
  uname -r
}
no_host_network() {
  # UML is booted without network devices: nothing in the guest can reach
  # the host's network. The only links are the ones this script makes.
  ip -o link show
  ! ip -o link show | grep -q 'link/ether'
}
netns_veth() {
  ip netns add "$NS"
  ip link add veth-h type veth peer name veth-s
  ip link set veth-s netns "$NS"
  ip addr add "$HOST_IP/24" dev veth-h
  ip link set veth-h up
  ip -n "$NS" link set lo up
  ip -n "$NS" addr add "$NS_IP/24" dev veth-s
  ip -n "$NS" link set veth-s up
  ip -br addr show veth-h
  ip -n "$NS" -br addr show veth-s
  # A TCP round trip across the link (bash /dev/tcp, nothing listening: RST).
  local out
  out="$(timeout 5 bash -c "exec 3<>/dev/tcp/$NS_IP/9" 2>&1)" || true
  grep -q 'Connection refused' <<<"$out" || { echo "no answer from $NS_IP: $out"; return 1; }
}

# --- NFS ---------------------------------------------------------------------------
mkdir_tmpfs() { mkdir -p "$1" && mount -t tmpfs -o size=32m,mode=0755 tmpfs "$1"; }

nfs4_server_in_netns() {
  mkdir_tmpfs /srv/nfs4
  mkdir -p /srv/nfs4/e1 /etc/exports.d
  echo "server side v4" >/srv/nfs4/e1/from-server
  cat >/etc/exports.d/smoke-v4.exports <<EOF
/srv/nfs4     $HOST_IP/32(rw,sync,no_subtree_check,no_root_squash,fsid=0,crossmnt)
/srv/nfs4/e1  $HOST_IP/32(rw,sync,no_subtree_check,no_root_squash)
EOF
  # Everything in one `ip netns exec`: the nfsd mount is per mount namespace
  # and nfsd binds to the namespace that mounted it. nfsdcld (with the
  # namespace's own rpc_pipefs) gives nfsd client tracking there; without it
  # nfsd runs a grace period and the first OPEN stalls for 10-15 s.
  ip netns exec "$NS" sh -ec '
    mount -t nfsd nfsd /proc/fs/nfsd
    mkdir -p /run/stor-pipefs /var/lib/nfs/nfsdcld-stor
    mount -t rpc_pipefs rpc_pipefs /run/stor-pipefs
    nfsdcld -p /run/stor-pipefs -s /var/lib/nfs/nfsdcld-stor
    echo 10 >/proc/fs/nfsd/nfsv4gracetime
    rpc.mountd -N 3
    exportfs -ra
    rpc.nfsd -N 3 4
    echo "versions: $(cat /proc/fs/nfsd/versions), threads: $(cat /proc/fs/nfsd/threads)"'
  journalctl -k -b --no-pager | grep "NFSD:.*net" | tail -n 1
}
nfs4_mount() {
  mkdir -p /mnt/nfs4
  timeout 60 systemd-mount --no-ask-password --automount=no -t nfs \
    -o vers=4.2,soft,timeo=50,retrans=2 "$NS_IP:/e1" /mnt/nfs4
  systemctl is-active mnt-nfs4.mount
  local opts; opts="$(findmnt -n -o SOURCE,FSTYPE,OPTIONS /mnt/nfs4)"
  echo "$opts"
  grep -q 'vers=4.2' <<<"$opts"
}
nfs4_rw() {
  [[ "$(timeout 30 cat /mnt/nfs4/from-server)" == "server side v4" ]]
  echo "written by the client $$" | timeout 30 tee /mnt/nfs4/from-client >/dev/null
  timeout 30 sync /mnt/nfs4/from-client
  [[ "$(cat /srv/nfs4/e1/from-client)" == "written by the client $$" ]] || { echo "server does not see the file"; return 1; }
  [[ "$(timeout 30 cat /mnt/nfs4/from-client)" == "written by the client $$" ]]
}
nfs4_umount() {
  timeout 60 systemd-umount /mnt/nfs4
  ! findmnt /mnt/nfs4 >/dev/null || { echo "still mounted"; return 1; }
  local st; st="$(systemctl is-active mnt-nfs4.mount || true)"
  echo "mnt-nfs4.mount: $st"
  [[ "$st" == inactive ]]
}

nfs3_server_loopback() {
  mkdir_tmpfs /srv/nfs3
  echo "server side v3" >/srv/nfs3/from-server
  echo "/srv/nfs3  127.0.0.1/32(rw,sync,no_subtree_check,no_root_squash,fsid=3)" \
    >/etc/exports.d/smoke-v3.exports
  timeout 120 systemctl start nfs-server.service
  local ex; ex="$(exportfs -v)"
  echo "$ex"
  grep -q /srv/nfs3 <<<"$ex"
  cat /proc/fs/nfsd/versions
}
nfs3_mount_rw_umount() {
  mkdir -p /mnt/nfs3
  timeout 60 systemd-mount --no-ask-password --automount=no -t nfs \
    -o vers=3,soft,timeo=50,retrans=2 127.0.0.1:/srv/nfs3 /mnt/nfs3
  local opts; opts="$(findmnt -n -o SOURCE,FSTYPE,OPTIONS /mnt/nfs3)"
  echo "$opts"
  grep -q 'vers=3' <<<"$opts"
  [[ "$(timeout 30 cat /mnt/nfs3/from-server)" == "server side v3" ]]
  echo "v3 client $$" | timeout 30 tee /mnt/nfs3/from-client >/dev/null
  timeout 30 sync /mnt/nfs3/from-client
  [[ "$(cat /srv/nfs3/from-client)" == "v3 client $$" ]]
  timeout 60 systemd-umount /mnt/nfs3
  ! findmnt /mnt/nfs3 >/dev/null
}

# --- iSCSI -------------------------------------------------------------------------
BYPATH="/dev/disk/by-path/ip-$NS_IP:3260-iscsi-$IQN-lun-1"
tgt_in_netns() {
  mkdir_tmpfs /srv/iscsi
  truncate -s 16M /srv/iscsi/lun1.img
  ip netns exec "$NS" tgtd
  wait_for 10 tgtadm --lld iscsi --op show --mode target >/dev/null 2>&1
  tgtadm --lld iscsi --op new --mode target --tid 1 -T "$IQN"
  tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b /srv/iscsi/lun1.img
  tgtadm --lld iscsi --op bind --mode target --tid 1 -I ALL
  tgtadm --lld iscsi --op show --mode target | sed -n 1,3p
}
iscsi_discovery() {
  local out; out="$(timeout 60 iscsiadm -m discovery -t st -p "$NS_IP")"
  echo "$out"
  grep -q "^$NS_IP:3260,1 $IQN\$" <<<"$out"
}
iscsi_login() {
  timeout 60 iscsiadm -m node -T "$IQN" -p "$NS_IP" --login
  wait_for 30 test -e "$BYPATH" || { echo "no $BYPATH"; ls -l /dev/disk/by-path 2>&1; return 1; }
  local dev; dev="$(readlink -f "$BYPATH")"
  echo "$BYPATH -> $dev"
  [[ -b "$dev" ]]
  echo "size: $(blockdev --getsize64 "$dev")"
  [[ "$(blockdev --getsize64 "$dev")" == $((16 * 1024 * 1024)) ]]
  # A block written through the initiator lands in the target's backing file.
  printf 'storkeep-smoke-%s' "$$" | dd of="$dev" bs=512 seek=8 conv=fsync,sync status=none
  [[ "$(dd if=/srv/iscsi/lun1.img bs=512 skip=8 count=1 status=none | tr -d '\0')" == "storkeep-smoke-$$" ]]
}
iscsi_sysfs() {
  local s found=0
  for s in /sys/class/iscsi_session/session*; do
    [[ -e "$s/targetname" ]] || continue
    echo "$s: $(cat "$s/targetname") $(cat "$s/state")"
    [[ "$(cat "$s/targetname")" == "$IQN" && "$(cat "$s/state")" == LOGGED_IN ]] && found=1
  done
  ((found))
  iscsiadm -m session
}
iscsi_logout() {
  timeout 60 iscsiadm -m node -T "$IQN" -p "$NS_IP" --logout
  wait_for 30 test ! -e "$BYPATH" || { echo "$BYPATH still there"; return 1; }
  ! iscsiadm -m session >/dev/null 2>&1 || { echo "session left"; return 1; }
}

cleanup() {
  tgtadm --lld iscsi --op delete --mode logicalunit --tid 1 --lun 1 >/dev/null 2>&1
  tgtadm --lld iscsi --op delete --mode target --tid 1 >/dev/null 2>&1
  tgtadm --op delete --mode system >/dev/null 2>&1
  ip netns exec "$NS" sh -c 'mount -t nfsd nfsd /proc/fs/nfsd 2>/dev/null; rpc.nfsd 0' >/dev/null 2>&1
  systemctl stop nfs-server.service >/dev/null 2>&1
  return 0
}

T0=$(now)
echo "storkeep test host smoke: $(uname -sr), $(systemctl --version | head -n1)"
step "pid 1 is systemd"               pid1_is_systemd
step "system running or degraded"     system_running
step "busctl on the system bus"       system_bus
step "modprobe nfs nfsd iscsi_tcp veth" load_modules
step "no network device from the host" no_host_network
step "netns $NS with veth pair"       netns_veth
step "nfsd v4 in netns (tmpfs export)" nfs4_server_in_netns
step "systemd-mount nfs v4.2"         nfs4_mount
step "nfs v4.2 write and read back"   nfs4_rw
step "systemd-umount nfs v4.2"        nfs4_umount
step "nfsd v3 on loopback"            nfs3_server_loopback
step "nfs v3 mount, rw, umount"       nfs3_mount_rw_umount
step "tgtd in netns, file-backed LUN" tgt_in_netns
step "iscsiadm discovery"             iscsi_discovery
step "iscsiadm login, by-path link"   iscsi_login
step "sysfs iscsi_session targetname" iscsi_sysfs
step "iscsiadm logout"                iscsi_logout
cleanup

echo "--- boot: $(systemd-analyze time 2>/dev/null | head -n1)"
printf 'smoke took %.1fs\n' "$(awk -v a="$T0" -v b="$(now)" 'BEGIN{print b-a}')"
printf 'smoke: %d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
