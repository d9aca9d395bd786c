#!/usr/bin/env bash
# The DiLoCo pipeline through a real one-node Slurm cluster (scripts/slurm-local): two rounds with
# the job-array executor and with the one-allocation loop executor must end with models
# bit-identical to the local executor's. Exit 77 (skipped) without root or Slurm.
# Usage: tests/slurm/test_slurm.sh BIN_DIR
set -euo pipefail
bin=$(cd "${1:?usage: test_slurm.sh BIN_DIR}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $(id -u) -ne 0 ]] || ! command -v slurmctld >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  echo "skipped: needs root and Debian's slurmctld, slurmd, slurm-client, munge"
  exit 77
fi
work=$(mktemp -d /tmp/loco-slurm-test.XXXXXX)
export LOCO_SLURMCTLD_PORT=$((20000 + $$ % 20000)) LOCO_SLURMD_PORT=$((40001 + $$ % 20000))
cleanup() { "$root/scripts/slurm-local" stop "$work/cluster" || true; rm -rf "$work"; }
trap cleanup EXIT
eval "$("$root/scripts/slurm-local" start "$work/cluster")"

# Text to train on: the licence texts shipped with every Debian system, about 200 KB.
cat /usr/share/common-licenses/GPL-3 /usr/share/common-licenses/Apache-2.0 /usr/share/common-licenses/GPL-2 >"$work/text.txt"
common=(--data "$work/text.txt" --preset gpt-tiny --workers 2 --rounds 2 --inner-steps 5 --batch 4
        --threads 1 --test-fraction 0.05 --tools "$bin")

"$root/scripts/diloco" "${common[@]}" -o "$work/local" 2>"$work/local.log"

wait_for() {  # FILE: wait until it exists, no job is left, or 300 s pass
  for _ in $(seq 600); do
    [[ -f $1 ]] && return 0
    [[ -z $(squeue -h 2>/dev/null) ]] && { sleep 1; [[ -f $1 ]] && return 0; break; }
    sleep 0.5
  done
  echo "FAIL: $1 did not appear; queue:"; squeue || true
  tail -n 20 "$(dirname "$(dirname "$1")")"/slurm/logs/* 2>/dev/null || true
  return 1
}

failed=0
for executor in slurm slurm-loop; do
  out=$work/$executor
  "$root/scripts/diloco" "${common[@]}" --executor "$executor" -o "$out" 2>"$work/$executor.log"
  final=$out/rounds/round-0002.h5
  if ! wait_for "$final"; then failed=1; continue; fi
  sleep 1  # the finalize step may still be writing metrics
  if "$bin/loco-inspect" --diff "$work/local/rounds/round-0002.h5" "$final" >/dev/null &&
     [[ $("$bin/loco-inspect" --checksum --json "$work/local/rounds/round-0002.h5" | grep tensors_checksum) == \
        $("$bin/loco-inspect" --checksum --json "$final" | grep tensors_checksum) ]]; then
    echo "ok: --executor $executor: round 2 bit-identical to the local executor"
  else
    echo "FAIL: --executor $executor: round 2 differs from the local executor"; failed=1
  fi
done
[[ $failed -eq 0 ]] && echo "2 passed, 0 failed" || echo "0 passed, 1 failed"
exit "$failed"
