# The engine shared by scripts/diloco, scripts/baseline and scripts/streaming-diloco: options,
# idempotent steps, executors.
# shellcheck shell=bash disable=SC2155
# Sourced, not run. The calling script sets PIPELINE_MODE (diloco | baseline | streaming-diloco) and calls
# pipeline_main "$@". See docs/pipelines.md for the layout of an output folder.

# ---- defaults (the DiLoCo paper's inner AdamW and outer Nesterov; see --help) --------------------
pl_defaults() {
  workers=4 rounds=10 inner_steps=50 batch=16
  preset=gpt-tiny model_config='' init_seed=1
  data='' source=text partition=iid text_layout=contiguous text_block=8192 test_fraction=0.05 eval_data=''
  inner_optimizer='adamw:lr=4e-4,beta1=0.9,beta2=0.95,weight_decay=0.1' lr='' clip=1 schedule=''
  outer='nesterov:lr=0.7,momentum=0.9' reduce=mean min_deltas='' seed=1 eval_batch=64
  out='' executor=local jobs=$(nproc) threads='' dry_run=0 sbatch_args='' tools=''
  step='' step_round='' step_worker=''
  fragments=1 overlap=0 mixing=0  # streaming-diloco only
  codec='' ef='' delta_clip=none  # compressed deltas (pl_compress_delta); streaming: --codec only
}

pl_usage() {
  local me=$1
  if [[ $PIPELINE_MODE == streaming-diloco ]]; then
    cat <<EOF
Usage: $me --data FILE -o DIR [options]

Streaming DiLoCo (Douillard et al. 2025): the model is split into P strided fragments (fragment p
holds the transformer blocks p, p+P, ...; the embeddings go with block 0, the final norm and head
with the last block: loco-fragment --list shows it). Each of M workers trains continuously; every
H/P inner steps one fragment is synchronised, in turn, so each fragment once per H steps and the
largest exchange is about 1/P of the model. At its sync point minus TAU steps a worker sends the
fragment's delta (global - local) and keeps training TAU steps (the overlap); the aggregator
averages the deltas and takes the outer Nesterov step on that fragment's own global file; the
worker then mixes the new global fragment into its parameters, theta <- (1-ALPHA)*global +
ALPHA*theta. A round is H inner steps (P syncs); after each, the fragments are joined into the
global model and evaluated. With P = 1, TAU = 0, ALPHA = 0 this is scripts/diloco, bit for bit.
Steps are idempotent and resumable as in scripts/diloco; same metrics, plus peak_bytes_per_sync.
(The simulation runs the TAU overlap steps in the same worker call as the send, before the
aggregation; the aggregation does not depend on them, so the result is that of running them
concurrently.)
EOF
  elif [[ $PIPELINE_MODE == diloco ]]; then
    cat <<EOF
Usage: $me --data FILE -o DIR [options]

DiLoCo: M workers each run H inner AdamW steps on their own shard, send the delta
(theta_global - theta_local), and an aggregator averages the deltas and takes an outer Nesterov
step, for R rounds. Every step writes one file atomically and is skipped when its outputs exist,
so a rerun after a crash, a kill or a Slurm requeue continues where it stopped and ends with the
model an uninterrupted run makes, bit for bit. Writes metrics.jsonl (held-out loss, tokens, bytes
sent and received per worker, wall time per step, one line per round; round 0 is the initial
model). Compare against scripts/baseline and draw the table and plots with scripts/report.
EOF
  else
    cat <<EOF
Usage: $me --data FILE -o DIR [options]

The fully synchronous data-parallel baseline for a DiLoCo run with the same options: ONE worker
with the global batch M x B on the union of the M shards (the same training text and the same
held-out text), AdamW with the same schedule, evaluated every H steps so that its round r has
seen exactly the tokens of DiLoCo's round r. (The model is carried from one evaluation to the
next by loco-aggregate with outer SGD lr=1, which puts back the worker's local parameters; the
AdamW state persists across evaluations, so this is one uninterrupted AdamW run.) Communication
is counted as M synchronous workers exchanging every step: each sends its gradient and receives
the parameters, model bytes each way, H times a round. Same output layout, metrics and
idempotence as scripts/diloco.
EOF
  fi
  cat <<EOF

Options (defaults in brackets):
  --data FILE            training data: a text file (or what --source names) [required]
  -o, --output DIR       output folder, created; rerunning with the same DIR resumes [required]
  --workers M            number of workers [4]
  --rounds R             number of rounds (outer steps) [10]
  --inner-steps H        inner steps per round [50]
  --batch B              per-worker batch: windows of ctx+1 tokens (examples) per step [16]
  --preset NAME          model preset, see 'loco-init --list' [gpt-tiny]
  --model-config JSON    model config (JSON text or file) instead of --preset
  --init-seed S          model initialization seed [1]
  --source KIND          loco-shard --source: text|mnist-json|mnist-idx|csv|libsvm [text]
  --partition SPEC       loco-shard --partition for classification data [iid]
  --text-layout L        loco-shard --text-layout: contiguous (one run of the text per worker)
                         or interleaved (blocks dealt round-robin) [contiguous]
  --text-block N         interleaved: tokens per block [8192]
  --test-fraction F      fraction held out for evaluation [0.05]
  --eval-data FILE       evaluate on this data file instead of the held-out part
  --eval-batch N         loco-eval --batch [64]
  --inner-optimizer SPEC inner optimizer [adamw:lr=4e-4,beta1=0.9,beta2=0.95,weight_decay=0.1]
  --lr LR                inner learning rate (overrides the spec's lr)
  --schedule SPEC        inner schedule over the cumulative step
                         [cosine:warmup=min(1000,R*H/10),total=R*H,min_lr=0]
  --clip C               inner gradient-norm clipping, 0 off [1]
  --seed S               batch-stream seed of the workers [1]
EOF
  if [[ $PIPELINE_MODE != baseline ]]; then
    cat <<EOF
  --outer SPEC           outer optimizer (loco-aggregate --outer) [nesterov:lr=0.7,momentum=0.9]
  --reduce R             mean|weighted-mean|contributor-mean [mean]
  --min-deltas K         aggregation quorum [M]
EOF
  fi
  if [[ $PIPELINE_MODE == diloco ]]; then
    cat <<EOF
  --codec SPEC           compress each worker's delta with loco-compress --codec SPEC before the
                         aggregation (e.g. topk:density=0.015625,tile=4096+quant:bits=2,range=sigma);
                         bytes per round then count the compressed files' payload_bytes [off]
  --ef KIND              error feedback of the compression, state per worker (loco-compress --ef):
                         ef14, sparseloco[:beta=B] or dgc[:momentum=M,warmup=W] [off]
  --delta-clip C         loco-aggregate --clip: none or median-norm [none]
EOF
  fi
  if [[ $PIPELINE_MODE == streaming-diloco ]]; then
    cat <<EOF
  --fragments P          fragments, synchronised one every H/P steps; P divides H and is at most
                         the model's blocks (layers) [1]
  --overlap TAU          steps a worker trains between sending a fragment's delta and receiving
                         its new global values, 0 <= TAU < H/P [0]
  --mixing ALPHA         weight of the local parameters when the new global fragment is put
                         back: theta <- (1-ALPHA)*global + ALPHA*theta, in [0, 1] [0]
  --codec SPEC           compress each fragment's outer gradient with loco-compress --codec SPEC,
                         e.g. quant:bits=4 for the paper's 4-bit exchange; bytes count the
                         compressed files' payload_bytes [off]
EOF
  fi
  cat <<EOF
  --executor E           local: workers as parallel processes; slurm: per round one sbatch job
                         array of M workers and a dependent aggregation job, chained with
                         afterok; slurm-loop: one allocation of M tasks looping the rounds with
                         srun [local]
  --jobs J               local: workers run at once [nproc]
  --threads T            threads per worker [nproc / min(J, M), at least 1]
  --sbatch-args 'ARGS'   extra sbatch options for every job (e.g. '--partition=cpu --time=1:00:00')
  --tools DIR            folder of the loco-* binaries [\$LOCO_BIN, else build/bin, else PATH]
  --dry-run              print what would run (for slurm: the sbatch scripts) and change nothing
  -h, --help             this help

Internal (used by the Slurm jobs; runs one step and exits):
  --step prepare|worker|aggregate|finalize  --round R  --worker W
EOF
  if [[ $PIPELINE_MODE == streaming-diloco ]]; then
    cat <<EOF
  (streaming: --stage K instead of --round R; stage K = 1..R*P is the K-th synchronisation, and
  the Slurm executors submit per stage what the text above says per round)

Output folder: as scripts/diloco's, except: rounds/round-000R.h5 is the global model after round
R joined from the fragments (with the outer state); fragments/frag-p/round-000J.h5 is fragment
p's global file after J synchronisations (+ .summary.json, .seconds); deltas/stage-000K/worker-W.h5
the fragment delta of stage K; local/worker-W/stage-000K.h5 and state/worker-W/stage-000K.h5 the
worker's parameters and inner optimizer state after stage K (immutable).
Exit: 0 done; 2 usage; otherwise the failing tool's exit code, after naming the command.
EOF
    return 0
  fi
  cat <<EOF

Output folder: config.txt (the options; a rerun with other options is refused), shards/,
rounds/round-0000.h5 (initial model) ... round-R.h5 (global models, with the outer state),
deltas/round-R/worker-W.h5 (+ .json record, .steps.jsonl per-step losses),
state/worker-W/round-R.h5 (inner optimizer state after round R; immutable), metrics/round-R.json,
metrics.jsonl, logs/ (every tool's stderr), commands.log (every tool run, one line each), slurm/.
Exit: 0 done; 2 usage; otherwise the failing tool's exit code, after naming the command.
EOF
}

pl_die() { echo "${PIPELINE_MODE}: error: $*" >&2; exit "${PL_EXIT:-3}"; }
pl_usage_error() { echo "${PIPELINE_MODE}: error: $*" >&2; echo "Run with --help for usage." >&2; exit 2; }
pl_note() { echo "${PIPELINE_MODE}: $*" >&2; }

pl_parse() {
  pl_defaults
  PL_ARGS=()  # the options that define the run, replayed by the Slurm jobs
  while [[ $# -gt 0 ]]; do
    local opt=$1 val=${2-}
    case $opt in
      -h | --help) pl_usage "$(basename "$0")"; exit 0 ;;
      --dry-run) dry_run=1; shift; continue ;;
    esac
    [[ $# -ge 2 ]] || pl_usage_error "$opt needs a value"
    # NaN and infinities, alone or between '=', ',' and ':', are refused before any tool runs (the
    # tools refuse them in every option, lib/loco/cli/tool.cpp).
    [[ ",${val//[=:]/,}," =~ ,[+-]?([Nn][Aa][Nn]|[Ii][Nn][Ff]([Ii][Nn][Ii][Tt][Yy])?)(\([^,]*\))?, ]] &&
      pl_usage_error "$opt $val: not a finite number"
    case $opt in
      --data) data=$val ;;
      -o | --output) out=$val ;;
      --workers) workers=$val ;;
      --rounds) rounds=$val ;;
      --inner-steps) inner_steps=$val ;;
      --batch) batch=$val ;;
      --preset) preset=$val ;;
      --model-config) model_config=$val ;;
      --init-seed) init_seed=$val ;;
      --source) source=$val ;;
      --partition) partition=$val ;;
      --text-layout) text_layout=$val ;;
      --text-block) text_block=$val ;;
      --test-fraction) test_fraction=$val ;;
      --eval-data) eval_data=$val ;;
      --eval-batch) eval_batch=$val ;;
      --inner-optimizer) inner_optimizer=$val ;;
      --lr) lr=$val ;;
      --schedule) schedule=$val ;;
      --clip) clip=$val ;;
      --seed) seed=$val ;;
      --outer | --reduce | --min-deltas)
        [[ $PIPELINE_MODE != baseline ]] || pl_usage_error "$opt: the baseline's outer step is fixed (SGD lr=1)"
        case $opt in --outer) outer=$val ;; --reduce) reduce=$val ;; --min-deltas) min_deltas=$val ;; esac ;;
      --codec | --ef | --delta-clip)
        case $opt in --codec) codec=$val ;; --ef) ef=$val ;; --delta-clip) delta_clip=$val ;; esac ;;
      --fragments | --overlap | --mixing)
        [[ $PIPELINE_MODE == streaming-diloco ]] || pl_usage_error "$opt is an option of scripts/streaming-diloco"
        case $opt in --fragments) fragments=$val ;; --overlap) overlap=$val ;; --mixing) mixing=$val ;; esac ;;
      --executor) executor=$val ;;
      --jobs) jobs=$val ;;
      --threads) threads=$val ;;
      --sbatch-args) sbatch_args=$val ;;
      --tools) tools=$val ;;
      --step) step=$val ;;
      --round | --stage) step_round=$val ;;
      --worker) step_worker=$val ;;
      *) pl_usage_error "unknown option '$opt'" ;;
    esac
    case $opt in
      --executor | --jobs | --sbatch-args | --step | --round | --stage | --worker) ;;
      *) PL_ARGS+=("$opt" "$val") ;;
    esac
    shift 2
  done

  [[ -n $data ]] || pl_usage_error "--data is required"
  [[ -n $out ]] || pl_usage_error "--output is required"
  local n
  for n in workers rounds inner_steps batch jobs eval_batch text_block; do
    [[ ${!n} =~ ^[1-9][0-9]*$ ]] || pl_usage_error "--${n//_/-} must be a positive integer, not '${!n}'"
  done
  [[ -z $threads || $threads =~ ^[1-9][0-9]*$ ]] || pl_usage_error "--threads must be a positive integer"
  [[ $executor =~ ^(local|slurm|slurm-loop)$ ]] || pl_usage_error "--executor must be local, slurm or slurm-loop"
  [[ -z $step || $step =~ ^(prepare|worker|aggregate|finalize)$ ]] || pl_usage_error "--step: unknown step '$step'"
  [[ $reduce =~ ^(mean|weighted-mean|contributor-mean)$ ]] ||
    pl_usage_error "--reduce must be mean, weighted-mean or contributor-mean"
  pl_check_compress_options
  [[ -z $min_deltas ]] && min_deltas=$workers
  [[ $min_deltas =~ ^[1-9][0-9]*$ ]] || pl_usage_error "--min-deltas must be a positive integer"
  if [[ $PIPELINE_MODE == streaming-diloco ]]; then
    [[ $fragments =~ ^[1-9][0-9]*$ ]] || pl_usage_error "--fragments must be a positive integer, not '$fragments'"
    ((inner_steps % fragments == 0)) || pl_usage_error "--fragments $fragments must divide --inner-steps $inner_steps"
    if ! [[ $overlap =~ ^[0-9]+$ ]] || ((overlap >= inner_steps / fragments)); then
      pl_usage_error "--overlap must be an integer in [0, H/P) = [0, $((inner_steps / fragments))), not '$overlap'"
    fi
    /usr/bin/python3 -c "import sys; a=float(sys.argv[1]); sys.exit(0 if 0 <= a <= 1 else 1)" "$mixing" 2>/dev/null ||
      pl_usage_error "--mixing must be a number in [0, 1], not '$mixing'"
  fi
  [[ -e $data || $dry_run -eq 1 ]] || pl_usage_error "--data: $data does not exist"
  [[ -z $eval_data || -e $eval_data ]] || pl_usage_error "--eval-data: $eval_data does not exist"
  if [[ -z $eval_data ]]; then
    /usr/bin/python3 -c "import sys; f=float(sys.argv[1]); sys.exit(0 if 0 < f < 1 else 1)" "$test_fraction" 2>/dev/null ||
      pl_usage_error "--test-fraction must be in (0, 1) unless --eval-data is given"
  fi
  data=$(realpath -m -- "$data")
  [[ -n $eval_data ]] && eval_data=$(realpath -m -- "$eval_data")
  out=$(realpath -m -- "$out")
  if [[ -n $lr ]]; then  # --lr replaces the spec's lr (or adds one)
    local name=${inner_optimizer%%:*} params='' p kept=()
    [[ $inner_optimizer == *:* ]] && params=${inner_optimizer#*:}
    IFS=, read -r -a plist <<<"$params"
    for p in "${plist[@]}"; do [[ $p == lr=* || -z $p ]] || kept+=("$p"); done
    inner_optimizer="$name:lr=$lr$(printf ',%s' "${kept[@]}")"
    [[ ${#kept[@]} -gt 0 ]] || inner_optimizer="$name:lr=$lr"
  fi
  if [[ -z $schedule ]]; then
    local total=$((rounds * inner_steps)) warm=$((rounds * inner_steps / 10))
    ((warm > 1000)) && warm=1000
    ((warm < 1)) && warm=1
    schedule="cosine:warmup=$warm,total=$total,min_lr=0"
  fi
  if [[ -z $threads && -n $step ]]; then
    threads=$(nproc)  # a Slurm step: the CPUs of its allocation
  elif [[ -z $threads ]]; then
    local par=$jobs
    ((par > workers)) && par=$workers
    [[ $PIPELINE_MODE == baseline ]] && par=1
    threads=$(($(nproc) / par))
    ((threads < 1)) && threads=1
  fi

  # The baseline: one worker with the global batch on the union of the shards, outer SGD lr=1.
  sync_workers=$workers
  if [[ $PIPELINE_MODE == baseline ]]; then
    train_workers=1 train_batch=$((workers * batch)) outer='sgd:lr=1' reduce=mean min_deltas=1
    accounting=sync
  else
    train_workers=$workers train_batch=$batch accounting=diloco
  fi
  if [[ $PIPELINE_MODE == streaming-diloco ]]; then
    accounting=streaming units=$((rounds * fragments)) unit_flag=--stage unit_tag=s
  else
    units=$rounds unit_flag=--round unit_tag=r
  fi
  pl_find_tools
}

pl_find_tools() {
  local root
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  if [[ -z $tools ]]; then
    if [[ -n ${LOCO_BIN:-} ]]; then tools=$LOCO_BIN
    elif [[ -x ${LOCO_BUILD_DIR:-$root/build}/bin/loco-worker ]]; then tools=${LOCO_BUILD_DIR:-$root/build}/bin
    else tools=$(dirname "$(command -v loco-worker || echo /nonexistent/loco-worker)")
    fi
  fi
  tools=$(realpath -m -- "$tools")
  local t
  local need=(loco-shard loco-init loco-worker loco-aggregate loco-eval loco-inspect)
  [[ $PIPELINE_MODE == streaming-diloco ]] && need+=(loco-fragment)
  [[ -n $codec ]] && need+=(loco-compress)
  for t in "${need[@]}"; do
    [[ -x $tools/$t || $dry_run -eq 1 ]] || pl_usage_error "$tools/$t not found: build loco or pass --tools DIR"
  done
  PL_METRICS=$root/scripts/lib/metrics.py
}

# The options that fix the results; a resumed run must use the same.
pl_config_text() {
  cat <<EOF
pipeline=$PIPELINE_MODE
data=$data
source=$source
partition=$partition
text_layout=$text_layout
text_block=$([[ $text_layout == interleaved ]] && echo "$text_block")
test_fraction=$test_fraction
eval_data=$eval_data
eval_batch=$eval_batch
workers=$workers
rounds=$rounds
inner_steps=$inner_steps
batch=$batch
train_workers=$train_workers
train_batch=$train_batch
preset=$preset
model_config=$model_config
init_seed=$init_seed
inner_optimizer=$inner_optimizer
lr=$lr
schedule=$schedule
clip=$clip
seed=$seed
outer=$outer
reduce=$reduce
min_deltas=$min_deltas
EOF
  if [[ $PIPELINE_MODE == streaming-diloco ]]; then
    printf 'fragments=%s\noverlap=%s\nmixing=%s\n' "$fragments" "$overlap" "$mixing"
  fi
  if [[ -n $codec || $delta_clip != none ]]; then
    printf 'codec=%s\nef=%s\ndelta_clip=%s\n' "$codec" "$ef" "$delta_clip"
  fi
  [[ -z ${PIPELINE_OUTER_LR:-} ]] || printf 'outer_lr=%s\n' "$PIPELINE_OUTER_LR"
}

pl_check_config() {
  local want have
  want=$(pl_config_text)
  if [[ -f $out/config.txt ]]; then
    have=$(<"$out/config.txt")
    if [[ "$have" != "$want" ]]; then
      echo "${PIPELINE_MODE}: error: $out was made with other options; differences (was > now):" >&2
      diff <(echo "$have") <(echo "$want") | grep '^[<>]' >&2 || true
      exit 2
    fi
  else
    mkdir -p "$out" || pl_die "cannot create $out"
    printf '%s\n' "$want" >"$out/.config.txt.tmp"
    mv -f "$out/.config.txt.tmp" "$out/config.txt"
  fi
}

# ---- running tools ---------------------------------------------------------------------------
# pl_run LOG TOOL ARGS...: runs a loco tool with its stderr appended to LOG, records the command
# in commands.log, and on failure names the command and shows the end of LOG.
pl_run() {
  local log=$1 tool=$2
  shift 2
  local cmd=("$tools/$tool" "$@")
  printf '%s run %s\n' "$(date -u +%FT%TZ)" "$(printf '%q ' "${cmd[@]}")" >>"$out/commands.log"
  local rc=0
  "${cmd[@]}" 2>>"$log" || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "${PIPELINE_MODE}: error: command failed (exit $rc): $(printf '%q ' "${cmd[@]}")" >&2
    tail -n 5 "$log" | sed 's/^/  | /' >&2
    PL_EXIT=$rc
    exit "$rc"
  fi
}

pl_now() { date +%s.%N; }
pl_elapsed() { awk -v a="$1" -v b="$(pl_now)" 'BEGIN { printf "%.6f", b - a }'; }
pl_py() { /usr/bin/python3 -B "$PL_METRICS" "$@" || pl_die "metrics.py $1 failed"; }

r4() { printf '%04d' "$1"; }
pl_shard() { printf '%s/shards/data-%05d-of-%05d.h5' "$out" "$1" "$train_workers"; }
pl_model() { printf '%s/rounds/round-%04d.h5' "$out" "$1"; }
pl_delta() { printf '%s/deltas/round-%04d/worker-%d.h5' "$out" "$1" "$2"; }
pl_state() { printf '%s/state/worker-%d/round-%04d.h5' "$out" "$2" "$1"; }
# Streaming: stage K (1..R*P) synchronises fragment (K-1) mod P, whose global file goes from
# round (K-1) div P to the next; round R ends with stage R*P.
pl_frag() { printf '%s/fragments/frag-%d/round-%04d.h5' "$out" "$1" "$2"; }
pl_sdelta() { printf '%s/deltas/stage-%04d/worker-%d.h5' "$out" "$1" "$2"; }
pl_local() { printf '%s/local/worker-%d/stage-%04d.h5' "$out" "$2" "$1"; }
pl_sstate() { printf '%s/state/worker-%d/stage-%04d.h5' "$out" "$2" "$1"; }
pl_eval_data() { if [[ -n $eval_data ]]; then echo "$eval_data"; else echo "$out/shards/data-test.h5"; fi; }

# ---- the steps (each idempotent: done when its last-renamed output exists) ----------------------
step_prepare() {
  mkdir -p "$out/shards" "$out/rounds" "$out/metrics" "$out/logs"
  local log=$out/logs/prepare.log w have=1
  for ((w = 1; w <= train_workers; w++)); do [[ -f $(pl_shard "$w") ]] || have=0; done
  [[ -n $eval_data || -f $out/shards/data-test.h5 ]] || have=0
  if [[ $have -eq 0 ]]; then
    local tf=$test_fraction
    [[ -n $eval_data ]] && tf=0
    local args=(--source "$source" --input "$data" --shards "$train_workers" --seed "$seed"
      --test-fraction "$tf" -o "$out/shards/data")
    if [[ $source == text ]]; then
      args+=(--text-layout "$text_layout")
      [[ $text_layout == interleaved ]] && args+=(--block "$text_block")
    else args+=(--partition "$partition"); fi
    pl_run "$log" loco-shard "${args[@]}"
  fi
  local m0
  m0=$(pl_model 0)
  if [[ ! -f $m0 ]]; then
    if [[ -n $model_config ]]; then
      pl_run "$log" loco-init --config "$model_config" --seed "$init_seed" -o "$m0"
    else
      pl_run "$log" loco-init --preset "$preset" --seed "$init_seed" -o "$m0"
    fi
  fi
  if [[ $PIPELINE_MODE == streaming-diloco ]]; then
    local p
    for ((p = 0; p < fragments; p++)); do
      [[ -f $(pl_frag "$p" 0) ]] && continue
      mkdir -p "$(dirname "$(pl_frag "$p" 0)")"
      pl_run "$log" loco-fragment --fragments "$fragments" --index "$p" "$m0" -o "$(pl_frag "$p" 0)"
    done
  fi
  step_evaluate 0
}

step_worker() {
  local r=$1 w=$2
  local delta state rec dir
  delta=$(pl_delta "$r" "$w")
  state=$(pl_state "$r" "$w")
  dir=$(dirname "$delta")
  rec=${delta%.h5}.json
  [[ -f $delta && -f $state && -f $rec ]] && return 0
  mkdir -p "$dir" "$(dirname "$state")" "$out/logs"
  local log=$out/logs/round-$(r4 "$r")-worker-$w.log
  local work=$dir/.worker-$w.state.h5 tmp=$dir/.worker-$w.delta.h5 steps=$dir/.worker-$w.steps.jsonl
  rm -f "$work" "$tmp" "$steps"
  if ((r > 1)); then
    local prev
    prev=$(pl_state $((r - 1)) "$w")
    [[ -f $prev ]] || pl_die "worker $w, round $r: its state of round $((r - 1)) is missing: $prev"
    cp -- "$prev" "$work"
  fi
  local opt=(--optimizer "$inner_optimizer")
  local t0
  t0=$(pl_now)
  pl_run "$log" loco-worker --model "$(pl_model $((r - 1)))" --data "$(pl_shard "$w")" \
    --steps "$inner_steps" --state "$work" -o "$tmp" --batch "$train_batch" "${opt[@]}" \
    --schedule "$schedule" --clip "$clip" --seed "$seed" --threads "$threads" --metrics "$steps" -q
  [[ -n $codec ]] && pl_compress_delta "$r" "$w" "$tmp" "$log"
  local wall
  wall=$(pl_elapsed "$t0")
  pl_run "$log" loco-inspect --json "$tmp" >"$dir/.worker-$w.inspect.json"
  pl_py worker --inspect "$dir/.worker-$w.inspect.json" --round "$r" --worker "$w" --wall "$wall" -o "$rec"
  rm -f "$dir/.worker-$w.inspect.json"
  mv -f "$work" "$state"
  mv -f "$steps" "${delta%.h5}.steps.jsonl"
  mv -f "$tmp" "$delta"  # last: the step is done once the delta is in place
}

# Compressed deltas (--codec, --ef, --delta-clip): option checks, and the worker step's compression.
pl_check_compress_options() {
  [[ $delta_clip =~ ^(none|median-norm)$ ]] || pl_usage_error "--delta-clip must be none or median-norm"
  [[ -z $ef || -n $codec ]] || pl_usage_error "--ef needs --codec"
  if [[ $PIPELINE_MODE == streaming-diloco ]]; then
    # Streaming DiLoCo quantizes each fragment's outer gradient (the paper's 4-bit exchange); error
    # feedback would need a memory per fragment, which the paper does not use.
    [[ -z $ef && $delta_clip == none && $reduce != contributor-mean ]] ||
      pl_usage_error "--ef, --delta-clip and --reduce contributor-mean are for the diloco pipeline (streaming takes --codec)"
  elif [[ $PIPELINE_MODE != diloco ]]; then
    [[ -z $codec && $delta_clip == none && $reduce != contributor-mean ]] ||
      pl_usage_error "--codec, --ef, --delta-clip and --reduce contributor-mean are for the diloco pipeline"
  fi
  case ${ef%%:*} in
    '' | ef14 | sparseloco | dgc) ;;
    *) pl_usage_error "--ef ${ef}: loco-aggregate takes deltas compressed with ef14, sparseloco or dgc feedback" ;;
  esac
}

# Replaces the dense delta TMP of worker W in round R by its compression (loco-compress --codec, with
# the worker's error-feedback state when --ef is given). The feedback state of round R is made from
# that of round R-1 in a work file and put in place before the caller puts the delta in place, so a
# rerun of an interrupted step starts again from round R-1's state and writes the same files.
pl_efstate() { printf '%s/state/worker-%d/feedback-%04d.h5' "$out" "$2" "$1"; }
pl_compress_delta() {
  local r=$1 w=$2 tmp=$3 log=$4
  local ctmp=${tmp%.h5}.c.h5 efwork=${tmp%.h5}.ef.h5 efargs=()
  rm -f "$ctmp" "$efwork"
  if [[ -n $ef ]]; then
    if ((r > 1)); then
      local prev
      prev=$(pl_efstate $((r - 1)) "$w")
      [[ -f $prev ]] || pl_die "worker $w, round $r: its error-feedback state of round $((r - 1)) is missing: $prev"
      cp -- "$prev" "$efwork"
    fi
    efargs=(--ef "$ef" --ef-state "$efwork")
  fi
  pl_run "$log" loco-compress "$tmp" -o "$ctmp" --codec "$codec" --seed "$seed" --threads "$threads" "${efargs[@]}"
  [[ -n $ef ]] && mv -f "$efwork" "$(pl_efstate "$r" "$w")"
  mv -f "$ctmp" "$tmp"
}

# The outer learning rate of a round (scripts/demo): with PIPELINE_OUTER_LR=worker, set by the calling
# script, the round's outer step uses the learning rate its workers' step used (the lr attribute of
# their delta files: DeMo's sign step and momentum share one scheduled rate), passed as
# loco-aggregate --outer-lr; otherwise the --outer spec's own. Sets PL_OUTER_LR_ARGS.
pl_outer_lr_args() {
  PL_OUTER_LR_ARGS=()
  [[ ${PIPELINE_OUTER_LR:-} == worker ]] || return 0
  local d lr='' v
  for d in "$@"; do
    v=$("$tools/loco-inspect" --json "$d" | jq -r '.attributes.lr // empty') || pl_die "cannot read $d"
    [[ -n $v ]] || pl_die "$d has no lr attribute (made by loco-worker --optimizer demo?)"
    [[ -z $lr || $v == "$lr" ]] || pl_die "the deltas of one round used different learning rates ($lr, $v in $d)"
    lr=$v
  done
  PL_OUTER_LR_ARGS=(--outer-lr "$lr")
}

step_aggregate() {
  local r=$1 model dir
  model=$(pl_model "$r")
  dir=$(dirname "$(pl_delta "$r" 1)")
  local summary=${model%.h5}.summary.json
  if [[ ! -f $model || ! -f $summary ]]; then
    local deltas=() w
    for ((w = 1; w <= train_workers; w++)); do
      [[ -f $(pl_delta "$r" "$w") ]] && deltas+=("$(pl_delta "$r" "$w")")
    done
    ((${#deltas[@]} > 0)) || pl_die "round $r: no deltas in $dir"
    local log=$out/logs/round-$(r4 "$r")-aggregate.log tmp=$out/rounds/.round-$(r4 "$r").h5
    local tsum=$out/rounds/.round-$(r4 "$r").summary.json t0
    rm -f "$tmp" "$tsum"
    t0=$(pl_now)
    pl_outer_lr_args "${deltas[@]}"
    pl_run "$log" loco-aggregate --model "$(pl_model $((r - 1)))" -o "$tmp" --outer "$outer" "${PL_OUTER_LR_ARGS[@]}" \
      --reduce "$reduce" --clip "$delta_clip" --min-deltas "$min_deltas" --threads "$(nproc)" --json "${deltas[@]}" >"$tsum"
    printf '%s\n' "$(pl_elapsed "$t0")" >"$out/rounds/.round-$(r4 "$r").seconds"
    mv -f "$out/rounds/.round-$(r4 "$r").seconds" "${model%.h5}.seconds"
    mv -f "$tsum" "$summary"
    mv -f "$tmp" "$model"
  fi
  step_evaluate "$r"
}

# Streaming, stage K, worker W: from its parameters after stage K-1 (the initial model at K = 1),
# mix in the new global values of the fragment stage K-1 synchronised, train H/P steps, and send
# the delta of stage K's fragment taken TAU steps before the end.
step_worker_stream() {
  local k=$1 w=$2
  local delta state local_out rec dir
  delta=$(pl_sdelta "$k" "$w")
  state=$(pl_sstate "$k" "$w")
  local_out=$(pl_local "$k" "$w")
  dir=$(dirname "$delta")
  rec=${delta%.h5}.json
  [[ -f $delta && -f $state && -f $local_out && -f $rec ]] && return 0
  mkdir -p "$dir" "$(dirname "$state")" "$(dirname "$local_out")" "$out/logs"
  local log=$out/logs/stage-$(r4 "$k")-worker-$w.log
  local work=$dir/.worker-$w.state.h5 tmp=$dir/.worker-$w.delta.h5 steps=$dir/.worker-$w.steps.jsonl
  local tlocal=$dir/.worker-$w.local.h5
  rm -f "$work" "$tmp" "$steps" "$tlocal"
  local start mix=()
  if ((k > 1)); then
    local prev
    prev=$(pl_sstate $((k - 1)) "$w")
    start=$(pl_local $((k - 1)) "$w")
    [[ -f $prev && -f $start ]] || pl_die "worker $w, stage $k: its state or parameters of stage $((k - 1)) are missing: $prev, $start"
    cp -- "$prev" "$work"
    mix=(--mix "$(pl_frag $(((k - 2) % fragments)) $(((k - 2) / fragments + 1)))" --mixing "$mixing")
  else
    start=$(pl_model 0)
  fi
  local t0
  t0=$(pl_now)
  pl_run "$log" loco-worker --model "$start" "${mix[@]}" --data "$(pl_shard "$w")" \
    --steps $((inner_steps / fragments)) --overlap "$overlap" \
    --delta-base "$(pl_frag $(((k - 1) % fragments)) $(((k - 1) / fragments)))" --save-local "$tlocal" \
    --state "$work" -o "$tmp" --batch "$train_batch" --optimizer "$inner_optimizer" \
    --schedule "$schedule" --clip "$clip" --seed "$seed" --threads "$threads" --metrics "$steps" -q
  [[ -n $codec ]] && pl_compress_delta "$k" "$w" "$tmp" "$log"
  local wall
  wall=$(pl_elapsed "$t0")
  pl_run "$log" loco-inspect --json "$tmp" >"$dir/.worker-$w.inspect.json"
  pl_py worker --inspect "$dir/.worker-$w.inspect.json" --round $(((k - 1) / fragments + 1)) --stage "$k" \
    --worker "$w" --wall "$wall" -o "$rec"
  rm -f "$dir/.worker-$w.inspect.json"
  mv -f "$work" "$state"
  mv -f "$tlocal" "$local_out"
  mv -f "$steps" "${delta%.h5}.steps.jsonl"
  mv -f "$tmp" "$delta"  # last: the step is done once the delta is in place
}

# Streaming, stage K: the outer step of fragment (K-1) mod P on its own global file; at the end of
# a round, the fragments joined into rounds/round-R.h5 and evaluated.
step_aggregate_stream() {
  local k=$1
  local p=$(((k - 1) % fragments)) j=$(((k - 1) / fragments))
  local model summary
  model=$(pl_frag "$p" $((j + 1)))
  summary=${model%.h5}.summary.json
  if [[ ! -f $model || ! -f $summary ]]; then
    local deltas=() w
    for ((w = 1; w <= train_workers; w++)); do
      [[ -f $(pl_sdelta "$k" "$w") ]] && deltas+=("$(pl_sdelta "$k" "$w")")
    done
    ((${#deltas[@]} > 0)) || pl_die "stage $k: no deltas in $(dirname "$(pl_sdelta "$k" 1)")"
    local log=$out/logs/stage-$(r4 "$k")-aggregate.log stem
    stem=$(dirname "$model")/.round-$(r4 $((j + 1)))
    local tmp=$stem.h5 tsum=$stem.summary.json t0
    rm -f "$tmp" "$tsum"
    t0=$(pl_now)
    pl_run "$log" loco-aggregate --model "$(pl_frag "$p" "$j")" -o "$tmp" --outer "$outer" \
      --reduce "$reduce" --min-deltas "$min_deltas" --threads "$(nproc)" --json "${deltas[@]}" >"$tsum"
    printf '%s\n' "$(pl_elapsed "$t0")" >"$stem.seconds"
    mv -f "$stem.seconds" "${model%.h5}.seconds"
    mv -f "$tsum" "$summary"
    mv -f "$tmp" "$model"
  fi
  ((k % fragments == 0)) || return 0
  local r=$((k / fragments)) joined
  joined=$(pl_model "$r")
  if [[ ! -f $joined ]]; then
    local parts=() q
    for ((q = 0; q < fragments; q++)); do parts+=("$(pl_frag "$q" "$r")"); done
    pl_run "$out/logs/round-$(r4 "$r")-join.log" loco-fragment --join -o "$joined" "${parts[@]}"
  fi
  step_evaluate "$r"
}

step_evaluate() {
  local r=$1 rec=$out/metrics/round-$(r4 "$1").json
  [[ -f $rec ]] && return 0
  mkdir -p "$out/metrics"
  local model log=$out/logs/round-$(r4 "$r")-eval.log t0
  model=$(pl_model "$r")
  local ev=$out/metrics/.round-$(r4 "$r").eval.json ins=$out/metrics/.round-$(r4 "$r").inspect.json
  t0=$(pl_now)
  pl_run "$log" loco-eval --model "$model" --data "$(pl_eval_data)" --batch "$eval_batch" \
    --threads "$(nproc)" --json >"$ev"
  local ewall
  ewall=$(pl_elapsed "$t0")
  pl_run "$log" loco-inspect --json "$model" >"$ins"
  local args=(--pipeline "$PIPELINE_MODE" --round "$r" --workers "$sync_workers"
    --inner-steps "$inner_steps" --accounting "$accounting" --eval "$ev" --eval-wall "$ewall"
    --model-inspect "$ins" -o "$rec")
  if ((r > 0)) && [[ $PIPELINE_MODE == streaming-diloco ]]; then
    local w k p
    args+=(--previous "$out/metrics/round-$(r4 $((r - 1))).json")
    for ((p = 0; p < fragments; p++)); do
      local f
      f=$(pl_frag "$p" "$r")
      args+=(--aggregate "${f%.h5}.summary.json" --aggregate-wall "$(<"${f%.h5}.seconds")")
    done
    for ((k = (r - 1) * fragments + 1; k <= r * fragments; k++)); do
      for ((w = 1; w <= train_workers; w++)); do
        [[ -f $(pl_sdelta "$k" "$w") ]] && args+=("$(dirname "$(pl_sdelta "$k" "$w")")/worker-$w.json")
      done
    done
  elif ((r > 0)); then
    local w
    args+=(--aggregate "${model%.h5}.summary.json" --aggregate-wall "$(<"${model%.h5}.seconds")"
      --previous "$out/metrics/round-$(r4 $((r - 1))).json")
    for ((w = 1; w <= train_workers; w++)); do
      [[ -f $(pl_delta "$r" "$w") ]] && args+=("$(dirname "$(pl_delta "$r" "$w")")/worker-$w.json")
    done
  fi
  pl_py round "${args[@]}"
  rm -f "$ev" "$ins"
}

step_finalize() {
  pl_py collect --dir "$out/metrics" --rounds "$rounds" -o "$out/metrics.jsonl"
}

# ---- executors -------------------------------------------------------------------------------
# The unit the executors loop over: a round, or in streaming mode a stage (one synchronisation).
pl_step_worker() { if [[ $PIPELINE_MODE == streaming-diloco ]]; then step_worker_stream "$@"; else step_worker "$@"; fi; }
pl_step_aggregate() { if [[ $PIPELINE_MODE == streaming-diloco ]]; then step_aggregate_stream "$@"; else step_aggregate "$@"; fi; }

# Whether unit K is finished: its global file (and, at a round's end, the round's record) and
# every worker's outputs exist.
pl_unit_done() {
  local k=$1 w
  if [[ $PIPELINE_MODE == streaming-diloco ]]; then
    [[ -f $(pl_frag $(((k - 1) % fragments)) $(((k - 1) / fragments + 1))) ]] || return 1
    ((k % fragments != 0)) || [[ -f $out/metrics/round-$(r4 $((k / fragments))).json ]] || return 1
    local d
    for ((w = 1; w <= train_workers; w++)); do
      d=$(pl_sdelta "$k" "$w")
      [[ -f $d && -f ${d%.h5}.json && -f $(pl_sstate "$k" "$w") && -f $(pl_local "$k" "$w") ]] || return 1
    done
    return 0
  fi
  [[ -f $(pl_model "$k") && -f $out/metrics/round-$(r4 "$k").json ]] || return 1
  for ((w = 1; w <= train_workers; w++)); do
    [[ -f $(pl_delta "$k" "$w") && -f $(pl_state "$k" "$w") && -f $(dirname "$(pl_delta "$k" "$w")")/worker-$w.json ]] || return 1
  done
}

run_local() {
  local r w
  step_prepare
  for ((r = 1; r <= units; r++)); do
    pl_unit_done "$r" && continue
    local t0 failed=0 done_pid running=0
    t0=$(pl_now)
    declare -A who=()
    for ((w = 1; w <= train_workers; w++)); do
      if ((running >= jobs)); then
        wait -n -p done_pid || { failed=$?; pl_note "${unit_flag#--} $r: worker ${who[$done_pid]} failed"; }
        running=$((running - 1))
      fi
      (pl_step_worker "$r" "$w") &
      who[$!]=$w
      running=$((running + 1))
    done
    while ((running > 0)); do
      wait -n -p done_pid || { failed=$?; pl_note "${unit_flag#--} $r: worker ${who[$done_pid]} failed"; }
      running=$((running - 1))
    done
    [[ $failed -eq 0 ]] || PL_EXIT=$failed pl_die "${unit_flag#--} $r: a worker failed; rerun the same command to continue"
    pl_step_aggregate "$r"
    if [[ $PIPELINE_MODE == streaming-diloco ]]; then
      ((r % fragments == 0)) || continue
      local rr=$((r / fragments))
      pl_note "round $rr/$rounds: held-out loss $(jq -r '.loss' "$out/metrics/round-$(r4 "$rr").json") (last stage $(pl_elapsed "$t0") s)"
    else
      pl_note "round $r/$rounds: held-out loss $(jq -r '.loss' "$out/metrics/round-$(r4 "$r").json") ($(pl_elapsed "$t0") s)"
    fi
  done
  step_finalize
  pl_note "done: $out/metrics.jsonl"
}

# The command a Slurm job runs for one step: this script with the run's options.
pl_self_cmd() {
  printf '%q ' "$PL_SELF" "${PL_ARGS[@]}" --tools "$tools" "$@"
}

pl_slurm_header() {
  local name=$1
  cat <<EOF
#!/usr/bin/env bash
#SBATCH --job-name=$name
#SBATCH --output=$out/slurm/logs/%x-%j.out
#SBATCH --open-mode=append
#SBATCH --requeue
EOF
}

run_slurm() {
  local sdir=$out/slurm r w
  if [[ $dry_run -eq 0 ]]; then
    pl_check_config
    mkdir -p "$sdir/logs"
    command -v sbatch >/dev/null || pl_die "sbatch not found: --executor $executor needs Slurm"
  fi
  local sb_extra=()
  [[ -n $sbatch_args ]] && read -r -a sb_extra <<<"$sbatch_args"
  local tag
  tag=$(basename "$out")
  # pl_submit NAME DEPENDENCY SCRIPT-TEXT [sbatch options]: prints the job id (in a dry run, <NAME>).
  pl_submit() {
    local name=$1 dep=$2 text=$3
    shift 3
    local file=$sdir/$name.sbatch opts=(--parsable "$@" "${sb_extra[@]}")
    [[ -n $dep ]] && opts+=(--dependency="afterok:$dep" --kill-on-invalid-dep=yes)
    if [[ $dry_run -eq 1 ]]; then
      {
        echo "### $file"
        echo "### sbatch ${opts[*]} $file"
        echo "$text"
        echo
      } >&2
      echo "<$name>"
    else
      printf '%s\n' "$text" >"$file"
      local id
      id=$(sbatch "${opts[@]}" "$file") || pl_die "sbatch failed for $file"
      printf '%s run sbatch %s %s -> %s\n' "$(date -u +%FT%TZ)" "${opts[*]}" "$file" "${id%%;*}" >>"$out/commands.log"
      echo "${id%%;*}"
    fi
  }
  if [[ $executor == slurm ]]; then
    local prev
    prev=$(pl_submit "$tag-prepare" "" "$(pl_slurm_header "$tag-prepare")
$(pl_self_cmd --step prepare)" --ntasks=1 --cpus-per-task="$threads")
    for ((r = 1; r <= units; r++)); do
      local arr
      arr=$(pl_submit "$tag-$unit_tag$(r4 "$r")-workers" "$prev" "$(pl_slurm_header "$tag-$unit_tag$(r4 "$r")-workers")
#SBATCH --array=1-$train_workers
$(pl_self_cmd --step worker "$unit_flag" "$r") --worker \"\$SLURM_ARRAY_TASK_ID\"" --ntasks=1 --cpus-per-task="$threads")
      prev=$(pl_submit "$tag-$unit_tag$(r4 "$r")-aggregate" "$arr" "$(pl_slurm_header "$tag-$unit_tag$(r4 "$r")-aggregate")
$(pl_self_cmd --step aggregate "$unit_flag" "$r")" --ntasks=1 --cpus-per-task="$threads")
    done
    prev=$(pl_submit "$tag-finalize" "$prev" "$(pl_slurm_header "$tag-finalize")
$(pl_self_cmd --step finalize)" --ntasks=1)
    if [[ $dry_run -eq 1 ]]; then pl_note "dry run: nothing submitted"; else pl_note "submitted; the last job is $prev"; fi
  else
    local loop="$(pl_slurm_header "$tag-loop")
#SBATCH --ntasks=$train_workers
#SBATCH --cpus-per-task=$threads
set -euo pipefail
$(pl_self_cmd --step prepare)
for ((r = 1; r <= $units; r++)); do
  for ((w = 1; w <= $train_workers; w++)); do
    srun --ntasks=1 --exact $(pl_self_cmd --step worker) $unit_flag \"\$r\" --worker \"\$w\" &
  done
  fail=0
  for ((w = 1; w <= $train_workers; w++)); do wait -n || fail=1; done
  [[ \$fail -eq 0 ]] || { echo \"${unit_flag#--} \$r: a worker failed\" >&2; exit 1; }
  $(pl_self_cmd --step aggregate) $unit_flag \"\$r\"
done
$(pl_self_cmd --step finalize)"
    local id
    id=$(pl_submit "$tag-loop" "" "$loop")
    if [[ $dry_run -eq 1 ]]; then pl_note "dry run: nothing submitted"; else pl_note "submitted job $id"; fi
  fi
}

pl_dry_run_local() {
  pl_note "dry run: would write $out with"
  pl_config_text | sed 's/^/  /' >&2
  pl_note "  threads per worker: $threads, parallel workers: $jobs, tools: $tools"
}

pipeline_main() {
  PL_SELF=$(realpath -- "$0")
  pl_parse "$@"
  if [[ -n $step ]]; then
    pl_check_config
    case $step in
      prepare) step_prepare ;;
      worker)
        [[ $step_round =~ ^[1-9][0-9]*$ && $step_worker =~ ^[1-9][0-9]*$ ]] || pl_usage_error "--step worker needs $unit_flag and --worker"
        ((step_round <= units)) || pl_usage_error "$unit_flag $step_round: the run has $units"
        pl_step_worker "$step_round" "$step_worker" ;;
      aggregate)
        [[ $step_round =~ ^[1-9][0-9]*$ ]] || pl_usage_error "--step aggregate needs $unit_flag"
        ((step_round <= units)) || pl_usage_error "$unit_flag $step_round: the run has $units"
        pl_step_aggregate "$step_round" ;;
      finalize) step_finalize ;;
    esac
    return 0
  fi
  case $executor in
    local)
      if [[ $dry_run -eq 1 ]]; then pl_dry_run_local; return 0; fi
      pl_check_config
      run_local ;;
    slurm | slurm-loop) run_slurm ;;
  esac
}
