#!/usr/bin/env bash
# The pipelines through a real one-node Slurm cluster (scripts/slurm-local): two rounds of DiLoCo
# with the job-array executor and with the one-allocation loop executor, two rounds of federated
# SCAFFOLD (client sampling, control variates) and two rounds of ring gossip ending with the global
# merge must end with files bit-identical to the local executor's. Fails, naming what is missing,
# without root or Slurm (scripts/setup-deps installs it).
# Usage: tests/slurm/test_slurm.sh BIN_DIR
set -euo pipefail
bin=$(cd "${1:?usage: test_slurm.sh BIN_DIR}" && pwd)
root=$(cd "$(dirname "$0")/../.." && pwd)
if [[ $(id -u) -ne 0 ]] || ! command -v slurmctld >/dev/null || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  echo "FAIL: needs root and Debian's slurmctld, slurmd, slurm-client, munge (scripts/setup-deps installs them)" >&2
  exit 1
fi
work=$(mktemp -d /tmp/loco-slurm-test.XXXXXX)
export LOCO_SLURMCTLD_PORT=$((20000 + $$ % 20000)) LOCO_SLURMD_PORT=$((40001 + $$ % 20000))
# A job step of the stopped cluster may still be writing its log for a moment: retry the removal,
# and never let the clean-up change the test's result.
cleanup() {
  "$root/scripts/slurm-local" stop "$work/cluster" || true
  local i
  for i in 1 2 3 4 5 6 7 8 9 10; do rm -rf "$work" 2>/dev/null && return 0; sleep 0.5; done
  echo "note: could not remove $work" >&2
}
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

same() {  # LABEL LOCAL SLURM: the two files hold the same tensors, bit for bit
  if "$bin/loco-inspect" --diff "$2" "$3" >/dev/null &&
     [[ $("$bin/loco-inspect" --checksum --json "$2" | grep tensors_checksum) == \
        $("$bin/loco-inspect" --checksum --json "$3" | grep tensors_checksum) ]]; then
    echo "ok: $1: bit-identical to the local executor"; passed=$((passed + 1))
  else
    echo "FAIL: $1: differs from the local executor ($2 against $3)"; failed=$((failed + 1))
  fi
}

passed=0 failed=0
for executor in slurm slurm-loop; do
  out=$work/$executor
  "$root/scripts/diloco" "${common[@]}" --executor "$executor" -o "$out" 2>"$work/$executor.log"
  final=$out/rounds/round-0002.h5
  if ! wait_for "$final"; then failed=$((failed + 1)); continue; fi
  sleep 1  # the finalize step may still be writing metrics
  same "diloco --executor $executor, round 2" "$work/local/rounds/round-0002.h5" "$final"
done

# Federated and decentralized: a small 3-class CSV made here (no data set needed).
awk 'BEGIN { srand(7); print "a,b,c,d,label";
             for (i = 0; i < 480; i++) { y = i % 3; printf "%.4f,%.4f,%.4f,%.4f,%d\n",
               y + rand(), rand() - y, 2 * rand(), y * rand(), y } }' >"$work/d.csv"
small=(--data "$work/d.csv" --source csv --label-column label --model-config '{"arch":"mlp","sizes":[4,8,3]}'
       --rounds 2 --batch 8 --threads 1 --tools "$bin")
fed=("${small[@]}" --clients 6 --fraction 0.5 --local-steps 5 --strategy scaffold)
gossip=("${small[@]}" --nodes 4 --topology ring --inner-steps 5)
# SCRIPT NAME FILE ARGS...: SCRIPT with ARGS locally into $work/NAME-local and through Slurm into
# $work/NAME-slurm, then waits for FILE (a path inside the run folder) from the Slurm run.
local_and_slurm() {
  local script=$1 name=$2 file=$3
  shift 3
  "$root/scripts/$script" "$@" -o "$work/$name-local" 2>"$work/$name-local.log"
  "$root/scripts/$script" "$@" --executor slurm -o "$work/$name-slurm" 2>"$work/$name-slurm.log"
  wait_for "$work/$name-slurm/$file" && sleep 1
}
if local_and_slurm fedavg fed rounds/round-0002.h5 "${fed[@]}"; then
  same "fedavg (SCAFFOLD) --executor slurm, round 2" "$work/fed-local/rounds/round-0002.h5" "$work/fed-slurm/rounds/round-0002.h5"
  same "fedavg (SCAFFOLD) --executor slurm, server control variate" "$work/fed-local/rounds/control-0002.h5" "$work/fed-slurm/rounds/control-0002.h5"
else failed=$((failed + 1)); fi
if local_and_slurm gossip gossip merged/final.h5 "${gossip[@]}"; then
  same "gossip --executor slurm, node 3 after round 2" "$work/gossip-local/nodes/round-0002/node-3.h5" "$work/gossip-slurm/nodes/round-0002/node-3.h5"
  same "gossip --executor slurm, the global merge" "$work/gossip-local/merged/final.h5" "$work/gossip-slurm/merged/final.h5"
else failed=$((failed + 1)); fi
echo "$passed passed, $failed failed"
((failed == 0))
