#!/bin/bash
# Runs inside the test host (testhost/run.sh): installs storkeep from the
# .deb next to this script, so the daemon runs as the packaged service on
# the guest's system bus, then runs the end-to-end suite (e2e.test).
set -euo pipefail
cd "$(dirname "$0")"
# Seconds since the guest's kernel started, for each phase's line: the
# suite's wall time is what the test host is for (issue: time taken back).
up() { awk '{printf "%.1f", $1}' /proc/uptime; }
# The smoke test proves the test host itself (`make testhost` runs it); the
# suite covers the same ground through storkeep, so it runs here only on
# request (STORKEEP_E2E_SMOKE=1), as a diagnosis when the suite fails.
if [[ "${STORKEEP_E2E_SMOKE:-0}" == 1 ]]; then
  echo "== smoke: the guest's kernel, systemd, NFS and iSCSI are real"
  bash ./smoke.sh
fi
echo "== system: $(timeout 300 systemctl is-system-running --wait) at $(up) s ($(uname -r))"
# UML is booted without network devices: nothing the suite does can reach
# the host's network (smoke.sh proves the same).
if ip -o link show | grep -q 'link/ether'; then
  echo "the guest has a network device from the host:"; ip -o link show; exit 1
fi
echo "== dpkg -i storkeep.deb at $(up) s"
dpkg -i ./storkeep.deb
for _ in $(seq 600); do
  busctl --system status org.storkeep.StorKeep1 >/dev/null 2>&1 && break
  sleep 0.1
done
systemctl --no-pager status storkeepd.service | head -5 || true
echo "== e2e suite at $(up) s"
run=()
[[ -n "${STORKEEP_E2E_RUN:-}" ]] && run=(-test.run "$STORKEEP_E2E_RUN")
rc=0
./e2e.test -test.v -test.timeout 20m "${run[@]}" || rc=$?
echo "== e2e suite done at $(up) s"
exit "$rc"
