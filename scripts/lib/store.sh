# The store: a run whose sites share nothing but an rclone remote (docs/store.md, the protocol).
# shellcheck shell=bash disable=SC2034,SC2154  # the option variables are set through the table
# Sourced by scripts/lib/pipeline.sh. A pipeline that runs across sites calls pl_store_options in
# its table and defines store_aggregator (the aggregator's round loop), store_site_prepare (what a
# worker site makes from its own --data) and store_worker W (one worker's round loop); the engine
# runs them for --role aggregator / --role workers, locally or as Slurm jobs. A pipeline whose
# worker ids are not PL_ITEM_FIRST..PL_ITEM_LAST (fedavg's clients) sets ST_FIRST and ST_LAST in
# pl_derive. The functions here move objects: content-addressed uploads, manifests written last,
# verified downloads renamed into place, waiting with back-off, and the bytes and seconds of it;
# st_publish / st_fetch (one publication and its reader) and st_collect / st_round_record (the
# aggregator's round of deltas) are the parts of the roles that diloco, fedavg and gossip share.

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
  pl_opt --site-worker site_worker '' internal str W 'the worker of a store-worker step (one of --site-workers)'
  PL_STEPS+=(store-aggregator store-prepare store-worker)
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
  pl_fix site_worker '' "$1"
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
    pl_id_list --site-workers "$site_workers" "${ST_FIRST:-$PL_ITEM_FIRST}" "${ST_LAST:-$PL_ITEM_LAST}"
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
st_add() { printf -v "$1" '%s' "$(awk -v a="${!1:-0}" -v b="$2" 'BEGIN { printf "%.6f", a + b }')"; }
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
  tmp=$(dirname "$dest")/.$(basename "$dest").$BASHPID.download  # a site's workers may fetch one file at once
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

# st_read PATH [ARGS]: rclone cat of PATH in the store; what is not there reads as empty (an S3 prefix
# lists nothing; a folder remote says "directory not found", exit 3, or "file not found", exit 4).
st_read() {
  local rc=0
  st_rclone cat "$(st_path "$1")" "${@:2}" || rc=$?
  ((rc == 0 || rc == 3 || rc == 4))
}
# st_cat DIR PATTERN: the manifests DIR/PATTERN in the store, one JSON object a line (none: empty).
st_cat() {
  st_read "$1" --include "$2" --max-depth 1 | jq -c . ||
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
  have=$(st_read config.txt) || pl_die "cannot read $(st_path config.txt) (logs/store.log)"
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
st_config_seen() { ST_CONFIG=$(st_read config.txt) && [[ -n $ST_CONFIG ]]; }
st_config_agree() {
  st_wait "the run's config.txt (is the aggregator started?)" st_config_seen
  st_config_compare "$ST_CONFIG"
}

# st_manifest_seen DIR NAME: ST_MANIFEST gets DIR/NAME's JSON when it is in the store.
st_manifest_seen() {
  ST_MANIFEST=$(st_read "$1/$2") || pl_die "cannot read $(st_path "$1/$2") (logs/store.log)"
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

# ---- the parts of the roles the pipelines share ------------------------------------------------------
# st_publish DIR NAME LOCAL JSON ACCT FILE [KEY FILE]...: publishes FILE under DIR as NAME-<sha>.h5
# (and each KEY's FILE as NAME-KEY-<sha>.h5), then the manifest DIR/NAME.json: FILE's entry, the
# others' under "objects", the fields of JSON, and this process's transfers added into its field
# ACCT (docs/store.md), and the time of publication ("published": this site's clock after the
# uploads). LOCAL gets the manifest once it is published: done when LOCAL exists.
st_publish() {
  local dir=$1 name=$2 local=$3 json=$4 acct=$5 file=$6 entry objs='{}'
  shift 6
  [[ -f $local ]] && return 0
  st_put "$file" "$dir/$name"
  entry=$ST_ENTRY
  while (($# > 0)); do
    st_put "$2" "$dir/$name-$1"
    objs=$(jq -c --arg k "$1" --argjson e "$ST_ENTRY" '. + {($k): $e}' <<<"$objs")
    shift 2
  done
  jq -cn --argjson e "$entry" --argjson o "$objs" --argjson j "$json" --arg k "$acct" --argjson a "$(st_account_json)" \
    --argjson t "$(date +%s.%N)" \
    '$e + (if $o == {} then {} else {objects: $o} end) + $j + {published: $t}
     | .[$k] = reduce ($a | keys[]) as $x (.[$k] // {}; .[$x] += $a[$x])' >"$local.tmp"
  st_put_manifest "$local.tmp" "$dir/$name.json"
  mv -f "$local.tmp" "$local"
}
# st_publish_model R MODEL JSON [KEY FILE]...: round R's model for the workers: MODEL without its outer
# (server) state (loco-convert --tensors-only), and the KEY files as they are, published as
# round-R/model.json with JSON's fields (the round's record) and the transfers under "aggregator".
# Done once MODEL's local copy of the manifest is in place (MODEL without .h5, .manifest.json).
st_publish_model() {
  local r=$1 model=$2 json=$3 man view
  shift 3
  man=${model%.h5}.manifest.json
  [[ -f $man ]] && return 0
  view=$(dirname "$model")/.$(basename "${model%.h5}").view.h5
  pl_run "$out/logs/round-$(r4 "$r")-publish.log" loco-convert --tensors-only "$model" "$view"
  st_publish "round-$(r4 "$r")" model "$man" "$(jq -c --argjson r "$r" '. + {kind: "model", round: $r}' <<<"$json")" \
    aggregator "$view" "$@"
  rm -f "$view"
}
# st_fetch DIR NAME WHAT DEST [KEY DEST]...: waits for the manifest DIR/NAME.json (ST_MANIFEST gets
# it), then downloads its object to DEST and each KEY's object (st_publish's "objects") to its DEST,
# each checked and renamed into place; one already in place is kept. Dies naming WHAT when an object
# stays bad (its publisher's rerun publishes it again).
st_fetch() {
  local dir=$1 name=$2 what=$3 dest=$4
  shift 4
  st_wait "$dir/$name.json" st_manifest_seen "$dir" "$name.json"
  [[ -f $dest ]] || st_get "$dir" "$ST_MANIFEST" "$dest" "$what" || pl_die "$what in the store fails its checksum"
  while (($# > 0)); do
    [[ -f $2 ]] || st_get "$dir" "$(jq -c --arg k "$1" '.objects[$k]' <<<"$ST_MANIFEST")" "$2" "$what ($1)" ||
      pl_die "$what ($1) in the store fails its checksum"
    shift 2
  done
}

# st_collect R STEM SINCE AT-DEADLINE DEST-FN ID...: the aggregator's wait for round R's deltas of the
# workers ID (manifests round-R/STEM-ID.json): until every one is there, or --round-deadline seconds after
# SINCE (the previous model's publication) with at least AT-DEADLINE there. Each is downloaded and
# checked to DEST-FN R ID (its KEY objects beside it as .KEY.h5, last the delta itself) and its
# record written beside it (.json); one in place is kept (a rerun). ST_OK and ST_REFUSED get the
# workers whose deltas are in place and those whose objects failed their checksum, ST_ACCT their
# transfers (JSON by worker id).
st_collect() {
  local r=$1 stem=$2 since=$3 quorum=$4 dest_fn=$5 dir line w dest ok key keys
  shift 5
  dir=round-$(r4 "$r")
  ST_EXPECT=("$@")
  st_wait "round-$(r4 "$r")/$stem-*.json (round $r of ${ST_EXPECT[*]:-none})" st_deltas_ready "$r" "$stem" "$since" "$quorum"
  ST_OK=() ST_REFUSED=() ST_ACCT='{}'
  while IFS= read -r line; do
    [[ -n $line ]] || continue
    w=$(jq -r .worker <<<"$line")
    dest=$("$dest_fn" "$r" "$w")
    ok=1
    mapfile -t keys < <(jq -r '.objects // {} | keys[]' <<<"$line")
    for key in "${keys[@]}"; do
      [[ -f ${dest%.h5}.$key.h5 ]] || st_get "$dir" "$(jq -c --arg k "$key" '.objects[$k]' <<<"$line")" \
        "${dest%.h5}.$key.h5" "round $r" || ok=0
    done
    if ((ok)) && { [[ -f $dest ]] || st_get "$dir" "$line" "$dest" "round $r"; }; then
      jq .record <<<"$line" >"$(dirname "$dest")/.$(basename "${dest%.h5}").json"
      mv -f "$(dirname "$dest")/.$(basename "${dest%.h5}").json" "${dest%.h5}.json"
      ST_OK+=("$w")
      ST_ACCT=$(jq -c --arg w "$w" --argjson s "$(jq -c .store <<<"$line")" '. + {($w): $s}' <<<"$ST_ACCT")
    else
      ST_REFUSED+=("$w")
    fi
  done <<<"$ST_MANIFESTS"
}
# st_deltas_ready R STEM SINCE AT-DEADLINE: ST_MANIFESTS gets round R's manifests STEM-ID.json of
# ST_EXPECT's workers; true when every one is there, or when --round-deadline seconds have passed
# since SINCE and at least AT-DEADLINE are there.
st_deltas_ready() {
  local r=$1 stem=$2 since=$3 quorum=$4 n
  ST_MANIFESTS=$(st_cat "round-$(r4 "$r")" "$stem-*.json" |
    jq -c --argjson r "$r" --arg ids " ${ST_EXPECT[*]} " \
      'select(.kind != "model" and .round == $r and (.worker as $w | $ids | contains(" \($w) ")))')
  n=$(grep -c . <<<"$ST_MANIFESTS" || true)
  ((n == ${#ST_EXPECT[@]})) && return 0
  ((round_deadline > 0 && n >= quorum)) || return 1
  awk -v now="$(date +%s.%N)" -v t="$since" -v d="$round_deadline" 'BEGIN { exit !(now >= t + d) }'
}
# st_round_record R FILE [LATE-ID...]: the set st_collect took (and the late deltas applied), written
# before the aggregation so that a rerun aggregates the same set; the model's manifest carries it.
# ST_NOUN names the workers in the messages (fedavg: clients).
st_round_record() {
  local r=$1 rec=$2 w missing=()
  shift 2
  for w in "${ST_EXPECT[@]}"; do [[ " ${ST_OK[*]} " == *" $w "* ]] || missing+=("$w"); done
  ((${#missing[@]} == 0)) || pl_note "round $r: aggregating without ${ST_NOUN:-workers} ${missing[*]}"
  jq -cn --arg ok "${ST_OK[*]}" --arg late "$*" --arg miss "${missing[*]}" --arg bad "${ST_REFUSED[*]}" \
    --argjson workers "$ST_ACCT" --argjson agg "$(st_account_json)" \
    'def ids: split(" ") | map(select(. != "") | tonumber);
     {deltas: ($ok | ids), late: ($late | ids), missing: ($miss | ids), refused: ($bad | ids),
      workers: $workers, aggregator: $agg}' >"$rec.tmp"
  mv -f "$rec.tmp" "$rec"
  st_account_reset  # the publication's transfers are added to these by st_publish
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
    pl_note "done: the ${ST_NOUN:-workers} ${ST_WORKERS[*]} published every round"
  fi
}
step_store-aggregator() { st_site_check; store_aggregator; }
step_store-worker() {  # [ROUNDS W]: one worker's loop (pl_parallel's label and item; else --site-worker)
  local w=${2-$site_worker}
  st_site_check
  [[ -n $w ]] || pl_usage_error "--step store-worker needs --site-worker W"
  [[ " ${ST_WORKERS[*]} " == *" $w "* ]] || pl_usage_error "--site-worker $w is not one of --site-workers"
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
      "$(pl_self_cmd --step store-worker) --site-worker \"\$SLURM_ARRAY_TASK_ID\"" --array="$list" "${cpu[@]}")
  else
    local body w
    body="$(pl_self_cmd --step store-prepare)"$'\n'
    for w in "${ST_WORKERS[@]}"; do body+="srun --ntasks=1 --exact $(pl_self_cmd --step store-worker) --site-worker $w &"$'\n'; done
    body+="fail=0"$'\n'"for w in ${ST_WORKERS[*]}; do wait -n || fail=1; done"$'\n'"exit \$fail"
    prev=$(pl_submit "$PL_TAG-store-workers" "" "$body" --ntasks=${#ST_WORKERS[@]} --cpus-per-task="$threads")
  fi
  pl_slurm_end "$prev"
}
step_store-prepare() { st_site_check; store_site_prepare; }
