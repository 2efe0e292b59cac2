#!/bin/bash
# storkeep's main job, shown in the test host (run by `make demo` through
# testhost/run.sh): the packaged daemon on the guest's real system bus keeps
# an NFS export and an iSCSI LUN, living on two "remote" hosts (network
# namespaces behind veth links), connected through a link failure.
set -euo pipefail
cd "$(dirname "$0")"

NFS_NS=demo-nfs NFS_IP=10.254.1.1 NFS_HOST_IP=10.254.1.2
ISCSI_NS=demo-san ISCSI_IP=10.254.2.1 ISCSI_HOST_IP=10.254.2.2
IQN=iqn.2026-11.org.storkeep:demo
CHAP_USER=demo CHAP_SECRET=Demo-Secret-1234

step=0
header() { step=$((step + 1)); printf '\n=== %d. %s\n' "$step" "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
quiet() { "$@" >/dev/null 2>&1; }

veth() { # NS HOST_IF NS_IF HOST_IP NS_IP
  ip netns add "$1"
  ip link add "$2" type veth peer name "$3"
  ip link set "$3" netns "$1"
  ip addr add "$4/24" dev "$2" && ip link set "$2" up
  ip -n "$1" link set lo up
  ip -n "$1" addr add "$5/24" dev "$3" && ip -n "$1" link set "$3" up
}

header "Two remote hosts: an NFS server and an iSCSI target, each in a network namespace behind a veth link"
veth "$NFS_NS" vdn0 vdn1 "$NFS_HOST_IP" "$NFS_IP"
mkdir -p /srv/demo-nfs /etc/exports.d && mount -t tmpfs -o size=32m tmpfs /srv/demo-nfs
mkdir -p /srv/demo-nfs/vms && echo "hello from the NFS server" >/srv/demo-nfs/vms/README
cat >/etc/exports.d/demo.exports <<EOF
/srv/demo-nfs      $NFS_HOST_IP/32(rw,sync,no_subtree_check,no_root_squash,fsid=0,crossmnt)
/srv/demo-nfs/vms  $NFS_HOST_IP/32(rw,sync,no_subtree_check,no_root_squash)
EOF
ip netns exec "$NFS_NS" sh -ec '
  mount -t nfsd nfsd /proc/fs/nfsd
  mkdir -p /run/demo-pipefs /var/lib/nfs/nfsdcld-demo
  mount -t rpc_pipefs rpc_pipefs /run/demo-pipefs
  nfsdcld -p /run/demo-pipefs -s /var/lib/nfs/nfsdcld-demo
  echo 10 >/proc/fs/nfsd/nfsv4gracetime
  rpc.mountd -N 3
  exportfs -ra
  rpc.nfsd -N 3 4'
echo "NFS server: $NFS_IP exports /vms (NFSv4.2)"
veth "$ISCSI_NS" vds0 vds1 "$ISCSI_HOST_IP" "$ISCSI_IP"
mkdir -p /srv/demo-san && mount -t tmpfs -o size=64m tmpfs /srv/demo-san
truncate -s 16M /srv/demo-san/lun1.img
ip netns exec "$ISCSI_NS" tgtd
for _ in $(seq 100); do quiet tgtadm --lld iscsi --op show --mode target && break; sleep 0.1; done
tgtadm --lld iscsi --op new --mode target --tid 1 -T "$IQN"
tgtadm --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b /srv/demo-san/lun1.img
tgtadm --lld iscsi --op bind --mode target --tid 1 -I ALL
tgtadm --lld iscsi --op new --mode account --user "$CHAP_USER" --password "$CHAP_SECRET"
tgtadm --lld iscsi --op bind --mode account --tid 1 --user "$CHAP_USER"
echo "iSCSI target: $ISCSI_IP:3260 $IQN, one 16 MiB LUN, CHAP user $CHAP_USER"

header "Install storkeep: the packaged service on the system bus"
quiet dpkg -i ./storkeep.deb
for _ in $(seq 600); do quiet busctl --system status org.storkeep.StorKeep1 && break; sleep 0.1; done
run systemctl --no-pager --lines=0 status storkeepd.service | head -n 4

storkeepctl monitor >/tmp/monitor.log 2>&1 &
MONITOR=$!

header "Manage: two VMs share one NFS export, a third uses an iSCSI LUN with CHAP"
run storkeepctl manage "nfs://$NFS_IP/vms?vers=4.2" vm1-disk
run storkeepctl manage "nfs://$NFS_IP/vms?vers=4.2" vm2-disk
echo '$ echo *** | storkeepctl manage iscsi://'"$ISCSI_IP/$IQN/1"' vm3-lun --chap-user demo --chap-password-file -'
echo "$CHAP_SECRET" | storkeepctl manage "iscsi://$ISCSI_IP/$IQN/1" vm3-lun --chap-user "$CHAP_USER" --chap-password-file -
for cid in vm1-disk vm2-disk vm3-lun; do run storkeepctl wait "$cid" --timeout 60s; done

header "What storkeep says, and what the host shows"
run storkeepctl list
run busctl --system tree org.storkeep.StorKeep1
mp=$(busctl --system get-property org.storkeep.StorKeep1 /org/storkeep/StorKeep1/connection/vm1_2ddisk \
  org.storkeep.StorKeep1.Connection.NFS MountPoint | sed 's/^s "\(.*\)"$/\1/')
run findmnt -t nfs4 -o TARGET,SOURCE,OPTIONS "$mp"
run cat "$mp/README"
run iscsiadm -m session
run ls -l /dev/disk/by-path/ | grep -- "-iscsi-" || true

header "A link failure: the NFS server's link goes down, then comes back"
run ip link set vdn0 down
sleep 1
run storkeepctl show vm1-disk | grep -E '^(Connected|State|LastError|LastErrorMessage):' || true
run storkeepctl status
run journalctl -u storkeepd -p warning -o cat --since -10s --no-pager
run ip link set vdn0 up
run storkeepctl wait vm1-disk --timeout 60s
run storkeepctl show vm1-disk | grep -E '^(Connected|State):' || true

header "The same for the iSCSI target's link"
run ip link set vds0 down
echo "(storkeepd sees the link go at once; the kernel would wait for its NOP-out timeout, about 10 s)"
for _ in $(seq 40); do
  if storkeepctl show vm3-lun | grep -q '^Connected: false'; then break; fi
  sleep 0.5
done
run storkeepctl show vm3-lun | grep -E '^(Connected|State|LastError):' || true
run ip link set vds0 up
run storkeepctl wait vm3-lun --timeout 120s
run storkeepctl show vm3-lun | grep -E '^(Connected|State):' || true

header "What 'storkeepctl monitor' saw meanwhile"
kill "$MONITOR" 2>/dev/null || true
wait "$MONITOR" 2>/dev/null || true
cat /tmp/monitor.log

header "Unmanage: the shared mount stays until its last CID goes, then everything is gone"
run storkeepctl unmanage vm1-disk
run findmnt -n -o TARGET "$mp"
run storkeepctl unmanage vm2-disk
run storkeepctl unmanage vm3-lun
for _ in $(seq 300); do
  if ! findmnt "$mp" >/dev/null 2>&1 && ! iscsiadm -m session >/dev/null 2>&1; then break; fi
  sleep 0.1
done
findmnt "$mp" >/dev/null 2>&1 && { echo "still mounted: $mp"; exit 1; }
iscsiadm -m session >/dev/null 2>&1 && { echo "still logged in:"; iscsiadm -m session; exit 1; }
echo "no NFS mount at $mp, no iSCSI session"
run storkeepctl list

header "The CHAP secret appears nowhere outside the daemon"
if journalctl -b --no-pager | grep -q -- "$CHAP_SECRET"; then echo "the journal holds the secret"; exit 1; fi
echo "journal: no trace of it"
echo
echo "demo finished"
