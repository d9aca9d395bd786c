# shellcheck shell=bash disable=SC2034,SC2154  # the option variables are set through the table (printf -v)
# One worker's local training, by loco-worker or by the user's own trainer (--worker-cmd): sourced
# by scripts/lib/pipeline.sh. Every pipeline's training step calls pl_train; docs/your-trainer.md is
# the contract a worker command follows, and docs/decisions.md "Any trainer as a worker" the why.
#
# A worker command is a shell command with placeholders, run by bash in the output folder:
#   {global}, {global_h5}    the model to start from (loco HDF5)
#   {global_safetensors}     the same as safetensors (made once, beside it, when a command asks for it)
#   {local}                  where to write the trained local model (safetensors, .pt or loco HDF5:
#                            loco reads the content, not the name)
#   {shard}                  the worker's data shard (loco-shard's HDF5)
#   {worker} {round}         the worker (or client, node) id and the round being trained (1..R)
#   {steps} {batch}          inner steps this round, examples per step
#   {lr} {schedule} {step}   the inner optimizer's lr, the schedule text, the schedule position
#                            (steps this worker trained in earlier rounds)
#   {optimizer} {clip} {seed} {threads}
#                            the inner optimizer spec, gradient clip, seed, CPU threads it may use
#   {state_in} {state_out}   the trainer's own state of the previous round ('' in its first round; never
#                            to be modified) and where to write this round's
#   {metrics}                optional: per-step JSON lines as loco-worker --metrics writes them
# The pipeline then makes the delta with loco-delta (names, shapes and model config checked against
# {global}), and everything downstream is as with loco-worker.

PL_WC_KEYS=(global global_h5 global_safetensors local shard worker round steps batch lr schedule step
  optimizer clip seed threads state_in state_out metrics)

# The options, declared by a pipeline whose workers may be external (after its own table).
pl_trainer_options() {
  pl_opt --worker-cmd worker_cmd '' result str "'TEMPLATE'" \
    "train with this command instead of loco-worker (bash, in the output folder): placeholders such as {global_safetensors}, {local}, {shard}, {steps}, {lr}, {schedule}, {step}, {state_in} and {state_out} become quoted values; it writes its model to {local} and loco-delta makes the delta (docs/your-trainer.md lists them all)"
  pl_opt --worker-cmd-for worker_cmd_for '@every worker' result str LIST \
    'the workers that run --worker-cmd (e.g. 1,2 or 3-4); the others run loco-worker'
}

# pl_trainer_check FIRST LAST: --worker-cmd's placeholders and --worker-cmd-for's ids (FIRST..LAST).
declare -A PL_WC_SET=()
pl_trainer_check() {
  local first=$1 last=$2 t=${worker_cmd-} k
  if [[ -z $t ]]; then
    [[ -z ${worker_cmd_for-} ]] || pl_usage_error "--worker-cmd-for needs --worker-cmd"
    return 0
  fi
  for k in "${PL_WC_KEYS[@]}"; do t=${t//"{$k}"/}; done
  [[ ! $t =~ \{[a-z_]+\} ]] ||
    pl_usage_error "--worker-cmd: unknown placeholder ${BASH_REMATCH[0]} (the placeholders: $(printf '{%s} ' "${PL_WC_KEYS[@]}"))"
  [[ $worker_cmd == *'{local}'* ]] || pl_usage_error "--worker-cmd must write the local model to {local}"
  if [[ -z ${worker_cmd_for-} ]]; then
    for ((k = first; k <= last; k++)); do PL_WC_SET[$k]=1; done
    return 0
  fi
  pl_id_list --worker-cmd-for "$worker_cmd_for" "$first" "$last"
  for k in "${PL_IDS[@]}"; do PL_WC_SET[$k]=1; done
}
pl_external() { [[ -n ${worker_cmd-} && -n ${PL_WC_SET[$1]+x} ]]; }
# The state file of an external worker holds what its trainer writes (not loco's HDF5): another name.
pl_state_name() { if pl_external "$1"; then echo "${2%.h5}.state"; else echo "$2"; fi; }

# pl_train LOG ID ROUND STEP0 MODEL SHARD PREV-STATE WORK-STATE DELTA METRICS -- LOCO-WORKER-OPTIONS...
#   Trains worker ID in ROUND from MODEL on SHARD; writes the delta to DELTA, its state to WORK-STATE (from
#   PREV-STATE, '' in its first round) and its per-step metrics to METRICS. The options are
#   loco-worker's (--steps --batch --optimizer --schedule --clip --seed and more); an external worker
#   gets their values as placeholders (STEP0 is {step}) and may not need options only loco-worker
#   has (the caller refuses those with --worker-cmd). For an external worker, PL_TRAIN_BASE names
#   another base of the delta (streaming: the stage's fragment file) and PL_TRAIN_LOCAL a file to
#   keep its local model in (loco HDF5).
pl_train() {
  local log=$1 id=$2 round=$3 step0=$4 model=$5 shard=$6 prev=$7 work=$8 delta=$9 metrics=${10}
  shift 10
  [[ ${1-} == -- ]] && shift
  if ! pl_external "$id"; then
    [[ -z $prev ]] || cp -- "$prev" "$work"
    pl_run "$log" loco-worker --model "$model" --data "$shard" --state "$work" -o "$delta" --metrics "$metrics" \
      --threads "$threads" -q "$@"
    return 0
  fi
  declare -A v=([global]=$model [global_h5]=$model [shard]=$shard [worker]=$id [state_in]=$prev
    [state_out]=$work [metrics]=$metrics [threads]=$threads [step]=$step0 [round]=$round [clip]=0 [seed]=0)
  while (($# > 0)); do
    case $1 in
      --steps | --batch | --schedule | --clip | --seed | --optimizer) v[${1#--}]=$2; shift 2 ;;
      --worker) shift 2 ;;  # the id is the caller's ID
      *) pl_die "pl_train: loco-worker option $1 has no --worker-cmd equivalent" ;;
    esac
  done
  v[lr]=''
  [[ ${v[optimizer]} =~ (^|[:,])lr=([^,]+) ]] && v[lr]=${BASH_REMATCH[2]}
  v[local]=${delta%.h5}.local.safetensors
  [[ $worker_cmd != *'{global_safetensors}'* ]] || v[global_safetensors]=$(pl_safetensors_copy "$log" "$model") || exit $?
  rm -f "${v[local]}"
  local cmd=$worker_cmd k q rc=0
  for k in "${PL_WC_KEYS[@]}"; do
    printf -v q '%q' "${v[$k]-}"
    [[ -n ${v[$k]-} ]] || q="''"
    cmd=${cmd//"{$k}"/"$q"}
  done
  printf '%s run (worker %s) %s\n' "$(date -u +%FT%TZ)" "$id" "$cmd" >>"$out/commands.log"
  (cd "$out" && bash -c "$cmd") >>"$log" 2>&1 </dev/null || rc=$?
  if ((rc != 0)); then
    echo "$PL_NAME: error: worker $id, round ${v[round]}: the worker command failed (exit $rc): $cmd" >&2
    tail -n 5 "$log" | sed 's/^/  | /' >&2
    rm -f "${v[local]}" "$work" "$metrics"
    PL_EXIT=$rc
    exit "$rc"
  fi
  [[ -f ${v[local]} ]] || pl_die "worker $id, round ${v[round]}: the worker command exited 0 but wrote no local model to {local} (${v[local]})"
  if [[ $worker_cmd == *'{state_out}'* ]]; then
    [[ -f $work ]] || pl_die "worker $id, round ${v[round]}: the worker command wrote no state to {state_out} ($work)"
  else
    : >"$work"  # a stateless trainer: the step's state marker
  fi
  [[ -f $metrics ]] || : >"$metrics"
  local per=1 ctx
  ctx=$(pl_model_ctx "$model") || exit $?
  ((ctx > 0)) && per=$ctx  # token models count predictions, as loco-worker does
  # A local model loco-delta refuses (names, shapes, model config, non-finite) leaves no scratch.
  (pl_run "$log" loco-delta --base "${PL_TRAIN_BASE:-$model}" --local "${v[local]}" --worker "$id" \
    --samples $((${v[steps]} * ${v[batch]} * per)) --inner-steps "${v[steps]}" \
    --step $((step0 + ${v[steps]})) -o "$delta") || { rc=$?; rm -f "${v[local]}" "$work" "$metrics"; exit "$rc"; }
  if [[ -n ${PL_TRAIN_LOCAL-} ]]; then
    (pl_run "$log" loco-convert "${v[local]}" "$PL_TRAIN_LOCAL") ||
      { rc=$?; rm -f "${v[local]}" "$work" "$metrics" "$delta"; exit "$rc"; }
  fi
  rm -f "${v[local]}"
}

# The context length of a model (0: not a token model).
pl_model_ctx() { pl_model_attr "$1" '.attributes.model_config | fromjson | .ctx // 0'; }
pl_model_attr() {
  local j
  j=$("$tools/loco-inspect" --json "$1") || pl_die "cannot read $1"
  jq -r "$2" <<<"$j"
}

# pl_safetensors_copy LOG MODEL: MODEL's safetensors copy beside it (every worker of a round asks; each
# converts into its own name and renames, so they race harmlessly to the same bits).
pl_safetensors_copy() {
  local st=${2%.h5}.safetensors
  if [[ ! -f $st ]]; then
    local tmp
    tmp=$(mktemp "$(dirname "$st")/.convert.XXXXXX") || pl_die "cannot write beside $2"
    rm -f "$tmp"
    pl_run "$1" loco-convert "$2" "$tmp.safetensors"
    mv -f "$tmp.safetensors" "$st"
  fi
  echo "$st"
}
