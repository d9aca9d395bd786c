# The store: a run whose sites share nothing but an rclone remote (docs/store.md, the protocol).
# shellcheck shell=bash disable=SC2034,SC2154  # the option variables are set through the table
# Sourced by scripts/lib/pipeline.sh. A pipeline that runs across sites calls pl_store_options in
# its table and defines store_aggregator (the aggregator's round loop) and store_worker W (one
# worker's round loop); the engine runs them for --role aggregator / --role workers, locally or as
# Slurm jobs. The functions here move objects: content-addressed uploads, manifests written last,
# verified downloads renamed into place, waiting with back-off, and the bytes and seconds of it.

pl_store_options() {
  local PL_GROUP=engine
  pl_opt --store store '' run str REMOTE:PATH \
    "run across sites that share only this rclone remote (docs/store.md); credentials come from the environment (RCLONE_CONFIG_<NAME>_...) or rclone's config, never from the command line"
  pl_opt --role role '' run 'choice:aggregator|workers' ROLE 'with --store: what this site runs'
  pl_opt --site-workers site_workers '' run str LIST 'with --role workers: the workers this site runs (e.g. 1,2 or 3-4)'
  pl_opt --round-deadline round_deadline 0 run int0 S \
    "aggregator: S seconds after a round's model is published, aggregate the next round with the deltas there if they reach --min-deltas, naming the missing; 0 waits for every worker"
  pl_opt --late late '' run str RULE \
    'aggregator: apply deltas that arrive after their round in the next round, weighted by this staleness rule (constant, polynomial:a=A, hinge:a=A,b=B, fedfix) [drop them]'
  pl_opt --keep-rounds keep_rounds 0 run int0 K "delete the store's rounds older than the last K (0 keeps all)"
  pl_opt --bwlimit bwlimit '' run str RATE 'rclone --bwlimit for every transfer of this site (e.g. 10M)'
  pl_opt --store-timeout store_timeout 86400 run posint S 'give up after waiting S seconds for an object'
  pl_opt --store-poll store_poll 30 run posint S 'longest pause between two looks at the store (back-off from 1 s)'
  PL_STEPS+=(store-aggregator store-prepare "store-worker step_worker")
}
# pl_store_refuse REASON: a pipeline (or a variant) without the store roles refuses the options.
pl_store_refuse() {
  pl_fix store '' "$1"
  pl_fix role '' "$1"
  pl_fix site_workers '' "$1"
  pl_fix round_deadline 0 "$1"
  pl_fix late '' "$1"
  pl_fix keep_rounds 0 "$1"
  pl_fix bwlimit '' "$1"
  pl_fix store_timeout 86400 "$1"
  pl_fix store_poll 30 "$1"
  local s kept=()
  for s in "${PL_STEPS[@]}"; do [[ $s == store-* ]] || kept+=("$s"); done
  PL_STEPS=("${kept[@]}")
}
# st_used: whether any store option was given (st_validate then checks them together).
st_used() { [[ -n ${store-}${role-}${site_workers-}${late-}${bwlimit-} || ${keep_rounds:-0} != 0 || ${round_deadline:-0} != 0 ]]; }

# ---- checks ----------------------------------------------------------------------------------------
# st_validate: the store options together; ST_WORKERS gets the site's workers.
st_validate() {
  ST_WORKERS=()
  [[ -n $store ]] || pl_usage_error "--role, --site-workers and the other store options need --store"
  [[ -n $role ]] || pl_usage_error "--store needs --role aggregator or --role workers"
  # rclone's connection strings carry parameters (':s3,secret_access_key=...:' or 'name,k=v:'), which
  # would be recorded in commands.log and the Slurm scripts: only a remote's name is taken.
  [[ $store =~ ^[A-Za-z0-9_.][A-Za-z0-9_.\ -]*:[^,]*$ || $store == /* ]] ||
    pl_usage_error "--store '${store%%:*}:...': give a configured remote as NAME:PATH (or an absolute folder); \
parameters in the remote (rclone connection strings) are refused, so credentials stay out of the logs: set \
RCLONE_CONFIG_<NAME>_* variables or use rclone config"
  command -v rclone >/dev/null || pl_usage_error "rclone not found (scripts/setup-deps installs Debian's package)"
  declare -F store_aggregator >/dev/null || pl_usage_error "--store: scripts/$PL_NAME has no store roles"
  if [[ $role == workers ]]; then
    [[ -n $site_workers ]] || pl_usage_error "--role workers needs --site-workers LIST"
    pl_id_list --site-workers "$site_workers" "$PL_ITEM_FIRST" "$PL_ITEM_LAST"
    ST_WORKERS=("${PL_IDS[@]}")
  elif [[ -n $site_workers ]]; then
    pl_usage_error "--site-workers is for --role workers"
  fi
  [[ -z $late || $role == aggregator ]] || pl_usage_error "--late is an option of the aggregator"
  [[ -z $late ]] || [[ $late =~ ^(constant|polynomial(:a=[0-9.eE+-]+)?|hinge(:[ab]=[0-9.eE+-]+(,[ab]=[0-9.eE+-]+)?)?|fedfix)$ ]] ||
    pl_usage_error "--late '$late' is not a staleness rule: constant, polynomial[:a=A], hinge[:a=A,b=B], fedfix"
  return 0
}

# st_site_check: site.txt records the site's identity; a rerun as another site is refused.
st_site_check() {
  local want have
  want=$(printf 'store=%s\nrole=%s\nsite_workers=%s\n' "$store" "$role" "${ST_WORKERS[*]}")
  if [[ -f $out/site.txt ]]; then
    have=$(<"$out/site.txt")
    [[ $have == "${want%$'\n'}" ]] || pl_usage_error "$out is the folder of another site ($(tr '\n' ' ' <<<"$have")); \
give each site its own folder"
  else
    printf '%s' "$want" >"$out/.site.txt.tmp"
    mv -f "$out/.site.txt.tmp" "$out/site.txt"
  fi
}

# ---- transfers ---------------------------------------------------------------------------------------
# The bytes and seconds of this process's transfers since st_account_reset (docs/store.md).
st_account_reset() { ST_DOWN=0 ST_UP=0 ST_WAIT=0 ST_XFER=0; }
st_add() { printf -v "$1" '%s' "$(awk -v a="${!1}" -v b="$2" 'BEGIN { printf "%.6f", a + b }')"; }
st_account_json() {
  jq -cn --argjson d "$ST_DOWN" --argjson u "$ST_UP" --argjson w "$ST_WAIT" --argjson x "$ST_XFER" \
    '{bytes_down: ($d | floor), bytes_up: ($u | floor), wait_seconds: $w, transfer_seconds: $x}'
}
st_path() { printf '%s/%s' "${store%/}" "$1"; }

# st_rclone ARGS...: rclone with this site's --bwlimit, its stderr in logs/store.log, the command in
# commands.log. rclone 1.60 cannot use AWS_CA_BUNDLE (LoadCustomCABundleError): the bundle is given
# to rclone's own --ca-cert instead.
st_rclone() {
  local cmd=(rclone --retries 3 --low-level-retries 5)
  [[ -n $bwlimit ]] && cmd+=(--bwlimit "$bwlimit")
  local envs=()
  if [[ -n ${AWS_CA_BUNDLE:-} ]]; then envs=(-u AWS_CA_BUNDLE); cmd+=(--ca-cert "$AWS_CA_BUNDLE"); fi
  cmd+=("$@")
  mkdir -p "$out/logs"
  pl_log_command "${cmd[@]}"
  env "${envs[@]}" "${cmd[@]}" 2>>"$out/logs/store.log"
}
st_sha256() { sha256sum -- "$1" | cut -d' ' -f1; }
st_size() { stat -c %s -- "$1"; }

# st_put FILE PREFIX: uploads FILE as PREFIX-<sha>.h5 (content-addressed: a re-upload writes the same
# name and bytes); ST_ENTRY gets the manifest entry {object, sha256, bytes}.
st_put() {
  local file=$1 prefix=$2 sha bytes name t0
  sha=$(st_sha256 "$file")
  bytes=$(st_size "$file")
  name=$prefix-${sha:0:16}.h5
  t0=$(pl_now)
  st_rclone copyto "$file" "$(st_path "$name")" || pl_die "upload of $file to $(st_path "$name") failed (logs/store.log)"
  st_add ST_XFER "$(pl_elapsed "$t0")"
  st_add ST_UP "$bytes"
  ST_ENTRY=$(jq -cn --arg o "${name##*/}" --arg s "$sha" --argjson b "$bytes" '{object: $o, sha256: $s, bytes: $b}')
}
# st_put_manifest FILE NAME: uploads the JSON manifest FILE as NAME, last (it publishes).
st_put_manifest() {
  st_rclone copyto "$1" "$(st_path "$2")" || pl_die "upload of the manifest $(st_path "$2") failed (logs/store.log)"
}

# st_get DIR ENTRY DEST WHAT: downloads DIR/<ENTRY's object> to a hidden file beside DEST, checks its
# SHA-256 against ENTRY and renames it to DEST; 3 attempts with back-off. Returns 1 (after naming
# the object) when it stays bad.
st_get() {
  local dir=$1 entry=$2 dest=$3 what=$4 obj sha bytes tmp got attempt t0
  obj=$(jq -r .object <<<"$entry") sha=$(jq -r .sha256 <<<"$entry") bytes=$(jq -r .bytes <<<"$entry")
  tmp=$(dirname "$dest")/.$(basename "$dest").$$.download
  mkdir -p "$(dirname "$dest")"
  for attempt in 1 2 3; do
    rm -f "$tmp"
    t0=$(pl_now)
    # rclone's own hash check is off: the SHA-256 below is the one check, and it names the object.
    if st_rclone copyto --ignore-checksum "$(st_path "$dir/$obj")" "$tmp" && [[ -f $tmp ]]; then
      st_add ST_XFER "$(pl_elapsed "$t0")"
      st_add ST_DOWN "$(st_size "$tmp")"
      got=$(st_sha256 "$tmp")
      if [[ $got == "$sha" ]]; then
        mv -f "$tmp" "$dest"
        return 0
      fi
      pl_note "$what: $dir/$obj in the store has sha256 $got, its manifest says $sha ($bytes bytes): refused (attempt $attempt of 3)"
    else
      pl_note "$what: download of $dir/$obj failed (attempt $attempt of 3; logs/store.log)"
    fi
    rm -f "$tmp"
    ((attempt < 3)) && sleep "$attempt"
  done
  return 1
}

# st_cat DIR PATTERN: the manifests DIR/PATTERN in the store, one JSON object a line (none: empty).
st_cat() {
  st_rclone cat "$(st_path "$1")" --include "$2" --max-depth 1 | jq -c . ||
    pl_die "cannot read $(st_path "$1") (logs/store.log)"
}

# st_wait WHAT FN ARGS...: calls FN ARGS until it succeeds, pausing 1 s, 2 s, ... up to --store-poll;
# fails after --store-timeout naming WHAT. The seconds waited are added to ST_WAIT.
st_wait() {
  local what=$1 t0 pause=1
  shift
  t0=$(pl_now)
  until "$@"; do
    if awk -v e="$(pl_elapsed "$t0")" -v t="$store_timeout" 'BEGIN { exit !(e > t) }'; then
      pl_die "waited $store_timeout s (--store-timeout) for $what in $store"
    fi
    sleep "$pause"
    pause=$((pause * 2))
    ((pause <= store_poll)) || pause=$store_poll
  done
  st_add ST_WAIT "$(pl_elapsed "$t0")"
}

# st_config_publish / st_config_agree: the store's config.txt is the aggregator's; every site
# compares its own with it (as config.txt is compared on a rerun) and refuses other options.
st_config_publish() {
  local have
  have=$(st_rclone cat "$(st_path config.txt)") || pl_die "cannot read $(st_path config.txt) (logs/store.log)"
  if [[ -z $have ]]; then
    st_put_manifest "$out/config.txt" config.txt
  else
    st_config_compare "$have"
  fi
}
st_config_compare() {
  [[ "$(pl_config_filled <<<"$1")" == "$(pl_config_filled <"$out/config.txt")" ]] && return 0
  echo "$PL_NAME: error: the run in $store was started with other options; differences (store > this site):" >&2
  diff <(pl_config_filled <<<"$1") <(pl_config_filled <"$out/config.txt") | grep '^[<>]' >&2 || true
  exit 2
}
st_config_seen() { ST_CONFIG=$(st_rclone cat "$(st_path config.txt)") && [[ -n $ST_CONFIG ]]; }
st_config_agree() {
  st_wait "the run's config.txt (is the aggregator started?)" st_config_seen
  st_config_compare "$ST_CONFIG"
}

# st_manifest_seen DIR NAME: ST_MANIFEST gets DIR/NAME's JSON when it is in the store.
st_manifest_seen() {
  ST_MANIFEST=$(st_rclone cat "$(st_path "$1/$2")") || pl_die "cannot read $(st_path "$1/$2") (logs/store.log)"
  [[ -n $ST_MANIFEST ]]
}

# st_prune R: with --keep-rounds K, deletes the store's round folders up to R-K (the aggregator).
st_prune() {
  local r=$1 old
  ((keep_rounds > 0)) || return 0
  old=$((r - keep_rounds))
  ((old >= 0)) || return 0
  local d
  while IFS= read -r d; do
    [[ $d =~ ^round-([0-9]{4})/$ ]] || continue
    ((10#${BASH_REMATCH[1]} <= old)) || continue
    st_rclone purge "$(st_path "${d%/}")" || pl_die "cannot delete $(st_path "${d%/}") (logs/store.log)"
  done < <(st_rclone lsf --dirs-only "$(st_path '')")
}

# ---- the executors ---------------------------------------------------------------------------------
# st_main: one site's part of the run (the engine calls it for --store without --step).
st_main() {
  if [[ $dry_run -eq 1 && $executor == local ]]; then
    pl_note "dry run: $role of the run in $store${ST_WORKERS:+, workers ${ST_WORKERS[*]}}, in $out with"
    pl_config_text | sed 's/^/  /' >&2
    return 0
  fi
  if [[ $executor != local ]]; then st_slurm; return 0; fi
  pl_check_config
  st_site_check
  if [[ $role == aggregator ]]; then
    store_aggregator
  else
    store_site_prepare
    local jobs=${#ST_WORKERS[@]}  # the workers wait on the store most of the time: all at once
    pl_parallel store-worker "1-$units" step_store-worker "${ST_WORKERS[@]}"
    pl_note "done: the workers ${ST_WORKERS[*]} published their deltas of every round"
  fi
}
step_store-aggregator() { st_site_check; store_aggregator; }
step_store-worker() {  # [ROUNDS] W: one worker's loop (ROUNDS: pl_parallel's label)
  local w=${!#}
  st_site_check
  [[ " ${ST_WORKERS[*]} " == *" $w "* ]] || pl_usage_error "--worker $w is not one of --site-workers"
  store_worker "$w"
}

# The Slurm executors of a site: the aggregator as one job; the workers as a prepare job and a job
# array over --site-workers (slurm), or one allocation running them with srun (slurm-loop). Each job
# loops over the rounds, waiting on the store; a requeued job resumes like a rerun.
st_slurm() {
  pl_slurm_start
  local cpu=(--ntasks=1 --cpus-per-task="$threads") prev
  if [[ $role == aggregator ]]; then
    prev=$(pl_submit "$PL_TAG-store-aggregator" "" "$(pl_self_cmd --step store-aggregator)" "${cpu[@]}")
  elif [[ $executor == slurm ]]; then
    local list
    list=$(IFS=,; echo "${ST_WORKERS[*]}")
    prev=$(pl_submit "$PL_TAG-prepare" "" "$(pl_self_cmd --step store-prepare)" "${cpu[@]}")
    prev=$(pl_submit "$PL_TAG-store-workers" "afterok:$prev" \
      "$(pl_self_cmd --step store-worker) --worker \"\$SLURM_ARRAY_TASK_ID\"" --array="$list" "${cpu[@]}")
  else
    local body w
    body="$(pl_self_cmd --step store-prepare)"$'\n'
    for w in "${ST_WORKERS[@]}"; do body+="srun --ntasks=1 --exact $(pl_self_cmd --step store-worker) --worker $w &"$'\n'; done
    body+="fail=0"$'\n'"for w in ${ST_WORKERS[*]}; do wait -n || fail=1; done"$'\n'"exit \$fail"
    prev=$(pl_submit "$PL_TAG-store-workers" "" "$body" --ntasks=${#ST_WORKERS[@]} --cpus-per-task="$threads")
  fi
  pl_slurm_end "$prev"
}
step_store-prepare() { st_site_check; store_site_prepare; }
