#!/bin/bash
# Boot the storkeep test host (User-mode Linux, systemd as PID 1) from a
# pristine copy of the cached root, run SCRIPT inside it with bash, power off.
# The kernel (linux.uml) runs chrooted into its own tree (build.sh), in a
# mount namespace of its own that holds the guest root and the shared
# directories; before the first boot on a host, a preflight proves the
# kernel can run there and says in one line why not.
#
# Usage: testhost/run.sh SCRIPT [OUTDIR]
#   SCRIPT's directory is mounted in the guest at /mnt/host (read-write, it is
#   the host directory itself), so files next to SCRIPT (binaries, fixtures)
#   are reachable there. OUTDIR (default: a new temp dir, printed) receives:
#     log          the script's stdout+stderr
#     rc           the script's exit code
#     journal.txt  journalctl -b -o short-precise of the guest
#     console.log  the UML console (kernel + systemd), always kept
#     timing.txt   the timings printed at the end
#   Files the script writes to $STORKEEP_TESTHOST_OUT (/mnt/out) land in OUTDIR.
#   Exit code: the script's; 124 when the guest timed out; 125 when the guest
#   stopped without the script having finished; 2 for usage errors; 3 when
#   the host cannot run the test host (the preflight says why).
#
# Knobs (environment):
#   STORKEEP_TESTHOST_TIMEOUT    seconds for the whole guest run (default 600)
#   STORKEEP_TESTHOST_MEM        guest memory (default 1G)
#   STORKEEP_TESTHOST_ROOT_MODE  overlay (default; falls back to copy) | copy
#   STORKEEP_TESTHOST_SHUTDOWN_GRACE  seconds from the script's end to the
#                                guest's exit before it is killed (default 60)
#   STORKEEP_TESTHOST_KEEP_RUN=1 keep the per-run root for inspection
#   STORKEEP_TESTHOST_QUIET=1    do not copy the script's log to stdout
#   STORKEEP_TESTHOST_FOLLOW=1   print the script's log while it runs
#   STORKEEP_TESTHOST_CONSOLE_JOURNAL=0  keep the journal off the console
#   STORKEEP_E2E_*               passed into the guest script's environment
#   STORKEEP_CACHE, STORKEEP_TESTHOST_MIRROR: see build.sh
set -euo pipefail

HERE="$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"
TIMEOUT="${STORKEEP_TESTHOST_TIMEOUT:-600}"
MEM="${STORKEEP_TESTHOST_MEM:-1G}"
MODE="${STORKEEP_TESTHOST_ROOT_MODE:-overlay}"
GRACE="${STORKEEP_TESTHOST_SHUTDOWN_GRACE:-60}"

log() { printf '[testhost/run] %s\n' "$*" >&2; }
now() { date +%s.%N; }
diff_s() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.1f", b-a}'; }

if (($# < 1 || $# > 2)) || [[ ! -f "$1" ]]; then
  echo "usage: $0 SCRIPT [OUTDIR]" >&2
  exit 2
fi
# --- preflight: what the host must give, checked before anything is built ------
# Each failure is one line that says what is missing and why it is needed.
cannot() { printf 'testhost: cannot run here: %s\n' "$*" >&2; exit 3; }
[[ $(id -u) -eq 0 ]] || cannot "not root (mmdebstrap, chroot, mount namespaces and UML need root)"
for tool in unshare chroot mount setsid flock apt-get dpkg-query; do
  command -v "$tool" >/dev/null 2>&1 || cannot "no '$tool' on the PATH (util-linux, coreutils, apt, dpkg)"
done
[[ -d /dev/shm && -w /dev/shm ]] || cannot "no writable /dev/shm (UML keeps the guest's memory in a file there)"
mem_bytes() {
  local v=${1%[kKmMgG]} u=${1: -1}
  case $u in k|K) echo $((v << 10));; m|M) echo $((v << 20));; g|G) echo $((v << 30));; *) echo "$1";; esac
}
shm_free=$(( $(stat -f -c '%a * %S' /dev/shm) ))
(( shm_free >= $(mem_bytes "$MEM") )) ||
  cannot "/dev/shm has $((shm_free >> 20)) MiB free, the guest needs $MEM there (STORKEEP_TESTHOST_MEM, or a larger /dev/shm)"

SCRIPT="$(readlink -f "$1")"
SHARE="$(dirname "$SCRIPT")"
if (($# == 2)); then
  mkdir -p "$2"
  OUT="$(readlink -f "$2")"
else
  OUT="$(mktemp -d "${TMPDIR:-/tmp}/storkeep-testhost-out.XXXXXX")"
fi
rm -f "$OUT"/{log,rc,journal.txt,console.log,started,timing.txt}

T0=$(now)

# --- root -----------------------------------------------------------------------
DIR="$("$HERE/build.sh" | tail -n1)"
ROOT="$DIR/root"
UML="$DIR/uml"
[[ -d "$ROOT" && -x "$UML/usr/bin/linux.uml" ]] || { log "build.sh gave no test host"; exit 1; }
KERNEL="$(cat "$UML/etc/storkeep-testhost-kernel")"
T_BUILD=$(now)

# in_kernel_tree ARGS...: runs linux.uml ARGS chrooted into the kernel's tree,
# in a private mount namespace holding what the guest sees through hostfs:
# /dev (and the host's /dev/shm, where UML keeps guest memory), /proc (UML
# reads /proc/self/exe), a private /tmp (uml_dir), and, when set,
# G_LOWER/G_UPPER/G_WORK (an overlay) or G_BIND as /storkeep/guest and
# G_SHARE/G_OUT as /storkeep/share and /storkeep/out.
in_kernel_tree() {
  unshare -m --propagation private -- /bin/bash -c '
    set -e
    u=$1; shift
    mount --rbind /dev "$u/dev"
    mount -t proc proc "$u/proc"
    mount -t tmpfs -o mode=1777 tmpfs "$u/tmp"
    if [[ -n "${G_LOWER:-}" ]]; then
      mount -t overlay overlay -o "lowerdir=$G_LOWER,upperdir=$G_UPPER,workdir=$G_WORK" "$u/storkeep/guest"
    elif [[ -n "${G_BIND:-}" ]]; then
      mount --bind "$G_BIND" "$u/storkeep/guest"
    fi
    if [[ -n "${G_SHARE:-}" ]]; then
      mount --bind "$G_SHARE" "$u/storkeep/share"
      mount --bind "$G_OUT" "$u/storkeep/out"
    fi
    exec chroot "$u" /usr/bin/env TMPDIR=/dev/shm linux.uml "$@"' in_kernel_tree "$UML" "$@"
}

# The kernel's preflight: boot it with a one-line init, once per kernel and
# host CPU (the AMX failure depends on the CPU). ~1 s.
cpu_sig="$( { grep -m1 '^flags' /proc/cpuinfo; uname -r; cat "$UML/etc/storkeep-testhost-kernel"; } | sha256sum | cut -c1-16)"
if [[ ! -f "$DIR/preflight-$cpu_sig" ]]; then
  pf_log="$DIR/preflight.log"
  setsid /bin/bash -c "$(declare -f in_kernel_tree); UML=$(printf %q "$UML"); in_kernel_tree \"\$@\"" in_kernel_tree \
    mem=64M root=/dev/root rootfstype=hostfs rootflags=/ ro init=/storkeep/preflight-init \
    con=null con0=fd:0,fd:1 uml_dir=/tmp quiet </dev/null >"$pf_log" 2>&1 &
  pf_pid=$!
  for _ in $(seq 600); do kill -0 "$pf_pid" 2>/dev/null || break; sleep 0.1; done
  # setsid: its pid is the group's (and the group is not ours: it ran a minute).
  [[ "$(ps -o pgid= -p "$pf_pid" | tr -d ' ')" != "$pf_pid" ]] || kill -KILL -- "-$pf_pid" 2>/dev/null || true
  wait "$pf_pid" 2>/dev/null || true
  if grep -q 'storkeep-testhost-preflight: init runs' "$pf_log"; then
    touch "$DIR/preflight-$cpu_sig"
  else
    why="$(grep -m1 -E 'ptrace|Kernel panic' "$pf_log" || grep -v '^[[:space:]]*$' "$pf_log" | tail -n1)"
    if grep -q 'ptrace set fp regs failed' "$pf_log"; then
      why="$why: this kernel cannot hand the host CPU's register state to its processes (CPUs with AMX need user-mode-linux 7.2 or later)"
    fi
    cannot "$KERNEL does not start a process on this host: ${why:-no output} (whole output: $pf_log)"
  fi
fi

RUNS="${STORKEEP_CACHE:-$HOME/.cache/storkeep}/testhost/runs"
mkdir -p "$RUNS"
# Leftovers of runs that were killed hard (their pid is gone).
for d in "$RUNS"/run-*; do
  [[ -d $d ]] || continue
  p="${d##*/run-}"; p="${p%%-*}"
  kill -0 "$p" 2>/dev/null || rm -rf "$d"
done
RUN="$(mktemp -d "$RUNS/run-$$-XXXXXX")"
UML_PGID=""

cleanup() {
  local rc=$?
  if [[ -n "$UML_PGID" ]]; then
    kill -KILL -- "-$UML_PGID" 2>/dev/null || true
    wait 2>/dev/null || true
    for _ in $(seq 50); do pgrep -g "$UML_PGID" >/dev/null || break; sleep 0.1; done
  fi
  if [[ "${STORKEEP_TESTHOST_KEEP_RUN:-0}" == 1 ]]; then
    log "kept run dir $RUN"
  else
    rm -rf "$RUN"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# In overlay mode the merged root exists only inside the UML process's own
# mount namespace (unshare -m), so it vanishes with the guest whatever happens.
GUEST_ROOT=""
if [[ "$MODE" == overlay ]]; then
  mkdir -p "$RUN"/{upper,work,merged}
  if unshare -m --propagation private -- \
       mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$RUN/upper,workdir=$RUN/work" "$RUN/merged" 2>/dev/null; then
    GUEST_ROOT="$RUN/upper"   # files installed before boot go to the upper layer
  else
    log "overlay mount not possible here; copying the root instead"
    MODE=copy
  fi
fi
if [[ "$MODE" == copy ]]; then
  cp -a --reflink=auto "$ROOT" "$RUN/root"
  GUEST_ROOT="$RUN/root"
fi
[[ -n "$GUEST_ROOT" ]] || { log "unknown STORKEEP_TESTHOST_ROOT_MODE=$MODE"; exit 2; }

# --- the in-guest runner ----------------------------------------------------------
mkdir -p "$GUEST_ROOT"/usr/local/sbin "$GUEST_ROOT"/etc/storkeep-testhost \
         "$GUEST_ROOT"/etc/systemd/system/multi-user.target.wants
{
  printf 'SHARE=%q\nOUT=%q\nSCRIPT=%q\n' /storkeep/share /storkeep/out "$(basename "$SCRIPT")"
  while IFS='=' read -r name _; do
    [[ "$name" == STORKEEP_E2E_* ]] && printf 'export %s=%q\n' "$name" "${!name}"
  done < <(env)
} >"$GUEST_ROOT/etc/storkeep-testhost/run.env"

cat >"$GUEST_ROOT/usr/local/sbin/storkeep-testhost-run" <<'EOF'
#!/bin/bash
# Runs the test script once the guest is up, collects results, powers off.
set -u
. /etc/storkeep-testhost/run.env
mkdir -p /mnt/host /mnt/out
if ! mount -t hostfs none /mnt/host -o "$SHARE" || ! mount -t hostfs none /mnt/out -o "$OUT"; then
  echo "storkeep-testhost-run: cannot mount the host directories" >&2
  systemctl poweroff --no-block || poweroff -f
  exit 1
fi
date +%s.%N >/mnt/out/started
export STORKEEP_TESTHOST=1 STORKEEP_TESTHOST_SHARE=/mnt/host STORKEEP_TESTHOST_OUT=/mnt/out
export HOME=/root LANG=C.UTF-8
cd /mnt/host
bash "/mnt/host/$SCRIPT" </dev/null 2>&1 | tee /mnt/out/log
rc=${PIPESTATUS[0]}
journalctl -b --no-pager -o short-precise >/mnt/out/journal.txt 2>&1
echo "$rc" >/mnt/out/rc.tmp && mv /mnt/out/rc.tmp /mnt/out/rc
sync
echo "storkeep-testhost-run: script exited $rc, powering off"
systemctl poweroff --no-block || poweroff -f
EOF
chmod 755 "$GUEST_ROOT/usr/local/sbin/storkeep-testhost-run"

cat >"$GUEST_ROOT/etc/systemd/system/storkeep-testhost-run.service" <<'EOF'
[Unit]
Description=storkeep test host: run the test script
Wants=dbus.service
After=multi-user.target dbus.service

[Service]
# exec, not oneshot: the start job ends once the script runs, so the system
# can reach "running" while the script waits for it.
Type=exec
ExecStart=/usr/local/sbin/storkeep-testhost-run
StandardOutput=journal+console
StandardError=inherit
TimeoutStopSec=5s

[Install]
WantedBy=multi-user.target
EOF
ln -sfn ../storkeep-testhost-run.service \
  "$GUEST_ROOT/etc/systemd/system/multi-user.target.wants/storkeep-testhost-run.service"
T_ROOT=$(now)

# --- boot -------------------------------------------------------------------------
UMID="storkeep-$$"
# shellcheck disable=SC2054  # con0=fd:0,fd:1 is one argument
uml_args=(mem="$MEM" root=/dev/root rootfstype=hostfs rootflags=/storkeep/guest rw
          init=/lib/systemd/systemd con=null con0=fd:0,fd:1
          umid="$UMID" uml_dir=/tmp quiet)
# The whole guest journal on the console too, so console.log explains a guest
# that hangs before the journal could be copied out.
[[ "${STORKEEP_TESTHOST_CONSOLE_JOURNAL:-1}" == 1 ]] && uml_args+=(systemd.journald.forward_to_console=1)
log "booting $KERNEL ($MODE root, mem $MEM, timeout ${TIMEOUT}s); output in $OUT"
export G_SHARE="$SHARE" G_OUT="$OUT"
if [[ "$MODE" == overlay ]]; then
  export G_LOWER="$ROOT" G_UPPER="$RUN/upper" G_WORK="$RUN/work"
else
  export G_BIND="$GUEST_ROOT"
fi
setsid /bin/bash -c "$(declare -f in_kernel_tree); UML=$(printf %q "$UML"); in_kernel_tree \"\$@\"" in_kernel_tree \
  "${uml_args[@]}" </dev/null >"$OUT/console.log" 2>&1 &
UML_PID=$!
T_BOOT=$(now)
# setsid makes the background child the leader of a new process group: its
# pid is the group's. Wait until it is, so that the kill below can never
# reach run.sh's own group.
for _ in $(seq 100); do
  [[ "$(ps -o pgid= -p "$UML_PID" | tr -d ' ')" == "$UML_PID" ]] && break
  kill -0 "$UML_PID" 2>/dev/null || break
  sleep 0.01
done
UML_PGID=$UML_PID

# STORKEEP_TESTHOST_FOLLOW=1: print the script's output as it comes.
FOLLOW_PID=""
if [[ "${STORKEEP_TESTHOST_FOLLOW:-0}" == 1 ]]; then
  tail -n +1 -F "$OUT/log" 2>/dev/null &
  FOLLOW_PID=$!
fi
status=""
rc_seen=""
while kill -0 "$UML_PID" 2>/dev/null; do
  t=$(now)
  if [[ -z "$rc_seen" && -f "$OUT/rc" ]]; then rc_seen=$t; fi
  if [[ -n "$rc_seen" ]] && awk -v a="$rc_seen" -v b="$t" -v g="$GRACE" 'BEGIN{exit !(b-a > g)}'; then
    log "guest did not power off within ${GRACE}s of the script's end; killing it"
    status=shutdown-hung
    break
  fi
  if awk -v a="$T_BOOT" -v b="$t" -v g="$TIMEOUT" 'BEGIN{exit !(b-a > g)}'; then
    log "guest timed out after ${TIMEOUT}s; killing it (console: $OUT/console.log)"
    status=timeout
    break
  fi
  sleep 0.5
done
# Whatever state it is in, end the whole UML process group (UML forks a host
# process per guest process) and make sure nothing is left.
kill -KILL -- "-$UML_PGID" 2>/dev/null || true
wait "$UML_PID" 2>/dev/null || true
for _ in $(seq 50); do
  pgrep -g "$UML_PGID" >/dev/null || break
  sleep 0.1
done
if pgrep -g "$UML_PGID" >/dev/null; then
  log "UML processes still alive in group $UML_PGID:"; pgrep -a -g "$UML_PGID" >&2 || true
fi
UML_PGID=""
T_END=$(now)
if [[ -n "$FOLLOW_PID" ]]; then sleep 0.3; kill "$FOLLOW_PID" 2>/dev/null; wait "$FOLLOW_PID" 2>/dev/null || true; fi

boot_s="?"
[[ -f "$OUT/started" ]] && boot_s=$(diff_s "$T_BOOT" "$(cat "$OUT/started")")
{
  echo "kernel: $KERNEL"
  echo "root ready (build/reuse): $(diff_s "$T0" "$T_BUILD") s"
  echo "run root ($MODE): $(diff_s "$T_BUILD" "$T_ROOT") s"
  echo "boot to script start: $boot_s s"
  echo "guest total (boot, script, poweroff): $(diff_s "$T_BOOT" "$T_END") s"
  echo "total: $(diff_s "$T0" "$T_END") s"
} | tee "$OUT/timing.txt" | sed 's/^/[testhost\/run] /' >&2

if [[ "$status" == timeout ]]; then
  tail -n 20 "$OUT/console.log" >&2 || true
  exit 124
fi
if [[ ! -f "$OUT/rc" ]]; then
  log "guest stopped without the script finishing; see $OUT/console.log"
  tail -n 20 "$OUT/console.log" >&2 || true
  exit 125
fi
rc="$(cat "$OUT/rc")"
if [[ "${STORKEEP_TESTHOST_QUIET:-0}" != 1 && -z "$FOLLOW_PID" ]]; then cat "$OUT/log"; fi
log "script exit code $rc; results in $OUT"
exit "$rc"
