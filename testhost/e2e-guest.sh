#!/bin/bash
# Runs inside the test host (testhost/run.sh): installs storkeep from the
# .deb next to this script, so the daemon runs as the packaged service on
# the guest's system bus, then runs the end-to-end suite (e2e.test).
set -euo pipefail
cd "$(dirname "$0")"
# Seconds since the guest's kernel started, for each phase's line: the
# suite's wall time is what the test host is for (issue: time taken back).
up() { awk '{printf "%.1f", $1}' /proc/uptime; }
# TestBootOrderingAcrossReboot reboots the test host (UML re-executes its
# kernel on reboot, with the same root, so the guest's disk survives): after
# the suite this script prepares the next boot and reboots, and the runner
# starts it again on that boot, where it checks the boot and ends the run.
# This directory, on the guest's disk, says which boot this is.
boot_state=/var/lib/storkeep-e2e
boot_test='^TestBootOrderingAcrossReboot$'
if [[ -f "$boot_state/suite-rc" ]]; then
  # The runner's log of the first boot was copied before the reboot; the
  # runner writes the log afresh on this one.
  cat "$STORKEEP_TESTHOST_OUT/log.boot1" 2>/dev/null || true
  echo "== rebooted: system $(timeout 300 systemctl is-system-running --wait) at $(up) s"
  rc=$(cat "$boot_state/suite-rc")
  STORKEEP_E2E_BOOT_PHASE=after ./e2e.test -test.v -test.run "$boot_test" || rc=1
  rm -f "$boot_state/suite-rc"
  echo "== boot ordering across a reboot done at $(up) s"
  exit "$rc"
fi
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
# The reboot, for the whole suite or a run pattern that names its test.
if [[ -z "${STORKEEP_E2E_RUN:-}" || TestBootOrderingAcrossReboot =~ ${STORKEEP_E2E_RUN} ]]; then
  echo "== boot ordering: preparing the next boot at $(up) s"
  if STORKEEP_E2E_BOOT_PHASE=before ./e2e.test -test.v -test.run "$boot_test"; then
    mkdir -p "$boot_state"
    echo "$rc" >"$boot_state/suite-rc"
    journalctl -b --no-pager >"$STORKEEP_TESTHOST_OUT/journal.boot1.txt" 2>&1 || true
    echo "== rebooting the test host at $(up) s"
    cp "$STORKEEP_TESTHOST_OUT/log" "$STORKEEP_TESTHOST_OUT/log.boot1"
    sync
    if systemctl reboot; then
      # systemd ends this script (and the runner, before it writes rc)
      # on the way down; the next boot runs it again.
      sleep infinity
    fi
    rm -f "$boot_state/suite-rc"
  fi
  rc=1
fi
exit "$rc"
