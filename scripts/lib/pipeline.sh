# The engine of every pipeline script (scripts/diloco, streaming-diloco, sparseloco, demo, baseline,
# fedavg, gossip): the option table, messages, config.txt, tool lookup and runs, the bounded
# parallel runner, and the executors (local, Slurm job arrays, one Slurm allocation looping).
# shellcheck shell=bash disable=SC2034,SC2154  # the option variables are set through the table (printf -v)
# Sourced, not run. A pipeline script sets PL_KIND (its name in config.txt and the records), declares
# its options with pl_opt, defines its steps (step_NAME functions, each idempotent: done when its
# last-renamed output exists), run_local (the round loop) and run_slurm, lists its Slurm steps in
# PL_STEPS, and calls pl_main "$@". Optional hooks: pl_check (cross-option checks, before the tools
# are looked up), pl_derive (derived values; the tools are known), pl_config_extra (derived lines
# of config.txt), pl_dry_run_note. See docs/pipelines.md and docs/decisions.md "Pipeline engine".

# Messages are prefixed by the name it was run by: diloco, loco-diloco, or "loco diloco" (the
# front end says so in LOCO_INVOKED_AS, which the Slurm jobs and the tools need not inherit).
PL_NAME=${LOCO_INVOKED_AS:-$(basename -- "$0")}
unset LOCO_INVOKED_AS
PL_SELF=$(realpath -- "$0")
PL_PIPELINE=$(basename -- "$PL_SELF")  # the pipeline's own name (its man page loco-<name>.7)
# Its verb (loco VERB, installed as loco-VERB): the name, or NAME-pipeline when a tool is loco-NAME
# (scripts/gossip sets it; the install and tools/loco.cpp apply the same rule).
PL_VERB=${PL_VERB:-$PL_PIPELINE}
PL_LIB=$(dirname "$(realpath -- "${BASH_SOURCE[0]}")")
PL_ROOT=$(cd "$PL_LIB/../.." && pwd)  # the source tree, when run from one
# Installed (cmake --install: libexec/loco/lib), lib/layout holds the path from lib/ to the tools.
PL_INSTALLED_BIN=''
if [[ -f $PL_LIB/layout ]]; then PL_INSTALLED_BIN=$(cd "$PL_LIB/$(<"$PL_LIB/layout")" 2>/dev/null && pwd) || true; fi
# shellcheck source=scripts/lib/store.sh
source "$PL_LIB/store.sh"  # --store: sites that share only an object store (docs/store.md)
# shellcheck source=scripts/lib/trainer.sh
source "$PL_LIB/trainer.sh"  # pl_train: loco-worker or the user's trainer (--worker-cmd)

pl_die() { echo "$PL_NAME: error: $*" >&2; exit "${PL_EXIT:-3}"; }
pl_usage_error() { echo "$PL_NAME: error: $*" >&2; echo "Run with --help for usage." >&2; exit 2; }
pl_note() { echo "$PL_NAME: $*" >&2; }
pl_now() { date +%s.%N; }
pl_elapsed() { awk -v a="$1" -v b="$(pl_now)" 'BEGIN { printf "%.6f", b - a }'; }
r4() { printf '%04d' "$1"; }
# pl_py MODULE ARGS...: a Python module of scripts/lib (Debian's python3, standard library).
pl_py() { /usr/bin/python3 -B "$PL_LIB/$1" "${@:2}" || pl_die "scripts/lib/$1 ${2-} failed"; }

# ---- the option table --------------------------------------------------------------------------
# pl_opt NAMES VAR DEFAULT CLASS TYPE METAVAR HELP: declares an option once; usage (--help), the man
# page (--generate-man), the docs' reference (--generate-markdown), parsing, type checks, config.txt
# and the arguments the Slurm jobs replay all come from this table.
#   NAMES    '--name' or '-o|--output'
#   DEFAULT  the initial value; '@TEXT' starts the variable empty (computed later, or off) and
#            shows [TEXT] in the help
#   CLASS    result: fixes the results (config.txt; a rerun with another value is refused)
#            run: may change between reruns, replayed to the Slurm jobs (--threads, --tools)
#            local: this invocation only (--executor, --jobs, --dry-run)
#            internal: set by the Slurm jobs (--step, --round), listed on one line of the help
#   TYPE     str | posint | int0 | flag | file (must exist; made absolute) | dir (made absolute)
#            | choice:a|b|c | num:[lo,hi] (a decimal in the interval; ( ) open, an empty bound none)
#            | spec:TOOL OPTION (a str taking what TOOL's OPTION takes: bash completes its words)
#            add '!' for required (posint!, file!)
# Redeclaring a VAR replaces its row in place. pl_default VAR VALUE gives a variant its own default
# (scripts/sparseloco: the diloco table with other defaults) and pl_fix VAR VALUE REASON removes an
# option from the command line but keeps its fixed value in config.txt (scripts/baseline).
PL_O_NAMES=() PL_O_VAR=() PL_O_DEF=() PL_O_BASE=() PL_O_CLASS=() PL_O_TYPE=() PL_O_META=() PL_O_HELP=() PL_O_GROUP=()
declare -A PL_O_INDEX=() PL_REFUSED=() PL_FIXED=()
pl_opt() {
  local i=${#PL_O_VAR[@]} k
  for k in "${!PL_O_VAR[@]}"; do [[ ${PL_O_VAR[k]} == "$2" ]] && i=$k; done
  [[ -n ${PL_O_GROUP[i]-} ]] || PL_O_GROUP[i]=${PL_GROUP:-pipeline}
  PL_O_NAMES[i]=$1 PL_O_VAR[i]=$2 PL_O_DEF[i]=$3 PL_O_BASE[i]=$3 PL_O_CLASS[i]=$4 PL_O_TYPE[i]=$5 PL_O_META[i]=$6 PL_O_HELP[i]=$7
  local n
  IFS='|' read -r -a n <<<"$1"
  for k in "${n[@]}"; do PL_O_INDEX[$k]=$i; unset 'PL_REFUSED[$k]'; done
}
# The rows in the order the help lists them: the pipeline's, then the engine's.
pl_rows() {
  local g i
  for g in pipeline engine; do
    for i in "${!PL_O_VAR[@]}"; do [[ ${PL_O_GROUP[i]} == "$g" ]] && echo "$i"; done
  done
}
pl_row() {  # pl_row VAR: the row of VAR's option
  local k
  for k in "${!PL_O_VAR[@]}"; do [[ ${PL_O_VAR[k]} == "$1" ]] && { echo "$k"; return 0; }; done
  echo "pl_row: no option sets '$1'" >&2
  exit 70
}
pl_default() { local i; i=$(pl_row "$1"); PL_O_DEF[i]=$2; }
pl_help() { local i; i=$(pl_row "$1"); PL_O_HELP[i]=$2; }
# pl_fix VAR VALUE REASON: the option is refused (usage error naming REASON); VAR is VALUE.
pl_fix() {
  local i n
  i=$(pl_row "$1")
  PL_O_DEF[i]=$2 PL_FIXED[$i]=$3
  IFS='|' read -r -a n <<<"${PL_O_NAMES[i]}"
  for n in "${n[@]}"; do unset 'PL_O_INDEX[$n]'; PL_REFUSED[$n]=$3; done
}
# pl_refuse NAME... -- REASON: options another pipeline has, refused here with REASON.
pl_refuse() {
  local names=()
  while [[ $1 != -- ]]; do names+=("$1"); shift; done
  for n in "${names[@]}"; do PL_REFUSED[$n]=$2; done
}
pl_shown() { [[ -z ${PL_FIXED[$1]+x} && ${PL_O_CLASS[$1]} != internal ]]; }
pl_default_text() {  # the default as the help shows it ('' for none)
  local d=${PL_O_DEF[$1]} t=${PL_O_TYPE[$1]}
  if [[ $t == *'!' ]]; then echo required
  elif [[ $d == @* ]]; then echo "${d#@}"
  elif [[ $t != flag ]]; then echo "$d"
  fi
}

pl_defaults() {
  local i
  for i in "${!PL_O_VAR[@]}"; do
    local d=${PL_O_DEF[i]}
    [[ $d == @* ]] && d=''
    [[ ${PL_O_TYPE[i]} == flag ]] && d=0
    printf -v "${PL_O_VAR[i]}" '%s' "$d"
  done
}

# pl_check_value ROW VALUE: the type check of one option; a usage error names the option.
pl_is_number() { [[ $1 =~ ^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$ ]]; }
# pl_check_interval NAME VALUE INTERVAL: VALUE is a decimal number in INTERVAL ('[0,1]', '(0,1)',
# '(0,]': an empty bound is none).
pl_check_interval() {
  local name=$1 v=$2 iv=$3 lo hi
  lo=${iv:1} lo=${lo%%,*} hi=${iv#*,} hi=${hi%?}
  pl_is_number "$v" && awk -v x="$v" -v lo="$lo" -v hi="$hi" -v l="${iv:0:1}" -v r="${iv: -1}" 'BEGIN {
    ok = 1
    if (lo != "") ok = ok && (l == "[" ? x + 0 >= lo + 0 : x + 0 > lo + 0)
    if (hi != "") ok = ok && (r == "]" ? x + 0 <= hi + 0 : x + 0 < hi + 0)
    exit !ok }' || pl_usage_error "$name must be a number in ${iv/,/, }, not '$v'"
}
pl_check_value() {
  local i=$1 v=$2 t=${PL_O_TYPE[$1]%!} name=${PL_O_NAMES[$1]##*|}
  [[ -z $v && ${PL_O_TYPE[$1]} != *'!' && $t =~ ^(str|file|dir|spec:.*)$ ]] && return 0
  case $t in
    str | flag | dir | spec:*) ;;
    posint) [[ $v =~ ^[1-9][0-9]*$ ]] || pl_usage_error "$name must be a positive integer, not '$v'" ;;
    int0) [[ $v =~ ^[0-9]+$ ]] || pl_usage_error "$name must be a non-negative integer, not '$v'" ;;
    file) [[ -e $v || $dry_run -eq 1 ]] || pl_usage_error "$name: $v does not exist" ;;
    choice:*)
      [[ "|${t#choice:}|" == *"|$v|"* ]] || pl_usage_error "$name must be one of ${t#choice:}, not '$v'" ;;
    num:*) pl_check_interval "$name" "$v" "${t#num:}" ;;
    *) echo "pl_check_value: unknown type '$t' of $name" >&2; exit 70 ;;
  esac
}

# pl_id_list OPTION LIST FIRST LAST: the ids of a list such as '1,3' or '2-4' (--site-workers,
# --worker-cmd-for) in PL_IDS, each within FIRST..LAST and listed once; a usage error names OPTION.
pl_id_list() {
  local opt=$1 list=$2 first=$3 last=$4 part a b w parts
  declare -A seen=()
  PL_IDS=()
  IFS=, read -r -a parts <<<"$list"
  for part in "${parts[@]}"; do
    if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then a=${BASH_REMATCH[1]} b=${BASH_REMATCH[2]}
    elif [[ $part =~ ^[0-9]+$ ]]; then a=$part b=$part
    else pl_usage_error "$opt: '$part' is not an id or a range A-B"; fi
    ((a <= b)) || pl_usage_error "$opt: the range '$part' is empty"
    for ((w = a; w <= b; w++)); do
      ((w >= first && w <= last)) || pl_usage_error "$opt: $w is not within the run's $first..$last"
      [[ -z ${seen[$w]+x} ]] || pl_usage_error "$opt: $w is listed twice"
      seen[$w]=1
      PL_IDS+=("$w")
    done
  done
  ((${#PL_IDS[@]} > 0)) || pl_usage_error "$opt: no ids"
}

pl_parse() {
  pl_defaults
  PL_ARGS=()  # the options that define the run, replayed by the Slurm jobs
  local given=()
  while [[ $# -gt 0 ]]; do
    local opt=$1 i
    case $opt in
      -h | --help) pl_usage; exit 0 ;;
      --generate-man) pl_generate_man; exit 0 ;;
      --generate-markdown) pl_generate_markdown; exit 0 ;;
      --list-options) pl_list_options; exit 0 ;;
      --print-summary) printf '%s\n' "${PL_TITLE^}"; exit 0 ;;  # loco --list
      --generate-completion) pl_generate_completion "loco-$PL_VERB"; exit 0 ;;
    esac
    [[ -n ${PL_REFUSED[$opt]+x} ]] && pl_usage_error "$opt: ${PL_REFUSED[$opt]}"
    [[ -n ${PL_O_INDEX[$opt]+x} ]] || pl_usage_error "unknown option '$opt'"
    i=${PL_O_INDEX[$opt]}
    local var=${PL_O_VAR[i]} val=1
    if [[ ${PL_O_TYPE[i]} == flag ]]; then
      shift
    else
      [[ $# -ge 2 ]] || pl_usage_error "$opt needs a value"
      val=$2
      shift 2
      # NaN and infinities, alone or between '=', ',' and ':', are refused before any tool runs (the
      # tools refuse them in every option, lib/loco/cli/tool.cpp).
      [[ ",${val//[=:]/,}," =~ ,[+-]?([Nn][Aa][Nn]|[Ii][Nn][Ff]([Ii][Nn][Ii][Tt][Yy])?)(\([^,]*\))?, ]] &&
        pl_usage_error "$opt $val: not a finite number"
    fi
    printf -v "$var" '%s' "$val"
    given+=("$i")
    case ${PL_O_CLASS[i]} in
      result | run)
        if [[ ${PL_O_TYPE[i]} == flag ]]; then PL_ARGS+=("$opt")
        elif [[ ${PL_O_TYPE[i]%!} == file || ${PL_O_TYPE[i]%!} == dir ]] && [[ -n $val ]]; then
          PL_ARGS+=("$opt" "$(realpath -m -- "$val")")
        else PL_ARGS+=("$opt" "$val"); fi ;;
    esac
  done
  for i in "${!PL_O_VAR[@]}"; do
    [[ -n ${PL_FIXED[$i]+x} ]] && continue
    local v=${PL_O_VAR[i]}
    if [[ ${PL_O_TYPE[i]} == *'!' && -z ${!v} ]]; then pl_usage_error "${PL_O_NAMES[i]##*|} is required"; fi
  done
  for i in "${!PL_O_VAR[@]}"; do
    [[ -n ${PL_FIXED[$i]+x} || ${PL_O_CLASS[i]} == internal ]] && continue
    local v=${PL_O_VAR[i]} d=${PL_O_DEF[i]}
    [[ $d == @* ]] && d=''
    [[ ${!v} == "$d" && ${PL_O_TYPE[i]} != *'!' ]] || pl_check_value "$i" "${!v}"  # defaults are valid
    [[ ${PL_O_TYPE[i]%!} == file || ${PL_O_TYPE[i]%!} == dir ]] && [[ -n ${!v} ]] &&
      printf -v "$v" '%s' "$(realpath -m -- "${!v}")"
  done
  [[ -z $step || " ${PL_STEPS[*]%% *} " == *" $step "* ]] || pl_usage_error "--step: unknown step '$step'"
  units=$rounds unit_flag=--round unit_tag=r  # what the executors loop over (streaming: stages)
  if declare -F pl_check >/dev/null; then pl_check; fi
  pl_find_tools
  if declare -F pl_derive >/dev/null; then pl_derive; fi
  [[ -n $jobs ]] || jobs=$(nproc)
  if [[ -z $threads && -n $step ]]; then
    threads=$(nproc)  # a Slurm step: the CPUs of its allocation
  elif [[ -z $threads ]]; then
    local par=$jobs
    ((par > PL_WIDTH)) && par=$PL_WIDTH  # PL_WIDTH: the processes a round runs at once, at most
    threads=$(($(nproc) / par))
    ((threads >= 1)) || threads=1
  fi
}

# pl_with_lr SPEC LR: the optimizer SPEC with its lr replaced by LR (or added).
pl_with_lr() {
  local spec=$1 lr=$2 name=${1%%:*} params='' p kept=()
  [[ $spec == *:* ]] && params=${spec#*:}
  IFS=, read -r -a plist <<<"$params"
  for p in "${plist[@]}"; do [[ $p == lr=* || -z $p ]] || kept+=("$p"); done
  if ((${#kept[@]} > 0)); then echo "$name:lr=$lr$(printf ',%s' "${kept[@]}")"; else echo "$name:lr=$lr"; fi
}

# ---- usage, man page, docs reference (all from the table) -----------------------------------------
# pl_wrap WIDTH: reflows stdin's words into lines of at most WIDTH columns; a word longer than a
# line is cut after a comma or a '+' where it can be.
pl_wrap() {
  awk -v w="$1" '/^[[:space:]]*$/ { if (line != "") print line; line = ""; print ""; next }
  {
    n = split($0, word, " ")
    for (j = 1; j <= n; j++) {
      x = word[j]
      while (length(x) > w) {
        cut = 0
        for (c = w; c > 1; c--) if (substr(x, c, 1) ~ /[,+]/) { cut = c; break }
        if (cut == 0) cut = w
        if (line != "") { print line; line = "" }
        print substr(x, 1, cut); x = substr(x, cut + 1)
      }
      if (line == "") line = x
      else if (length(line) + 1 + length(x) <= w) line = line " " x
      else { print line; line = x }
    }
  } END { if (line != "") print line }'
}

pl_option_label() {  # '-o, --output DIR'
  local i=$1 label=${PL_O_NAMES[$1]//|/, }
  if [[ ${PL_O_TYPE[i]} == flag ]]; then echo "$label"; else echo "$label ${PL_O_META[i]}"; fi
}
pl_option_text() {  # the help and the shown default
  local d
  d=$(pl_default_text "$1")
  echo "${PL_O_HELP[$1]}${d:+ [$d]}"
}

pl_usage() {
  echo "Usage: $PL_NAME ${PL_SYNOPSIS:---data FILE -o DIR [options]}" | pl_wrap 78 | sed '2,$s/^/       /'
  echo
  printf '%s\n' "$PL_ABOUT" | pl_wrap 78
  echo
  echo "Options (defaults in brackets):"
  local i label
  for i in $(pl_rows); do
    pl_shown "$i" || continue
    label=$(pl_option_label "$i")
    if ((${#label} <= 22)); then
      pl_option_text "$i" | pl_wrap 55 | awk -v l="  $label" '{ printf "%-25s%s\n", NR == 1 ? l : "", $0 }'
    else
      echo "  $label"
      pl_option_text "$i" | pl_wrap 55 | sed 's/^/                         /'
    fi
  done
  echo "  -h, --help             this help"
  echo
  echo "Internal (used by the Slurm jobs; runs one step and exits):"
  local internal=()
  for i in "${!PL_O_VAR[@]}"; do
    [[ ${PL_O_CLASS[i]} == internal ]] && internal+=("$(pl_option_label "$i")")
  done
  echo "${internal[*]}" | pl_wrap 76 | sed 's/^/  /'
  echo "steps: ${PL_STEPS[*]%% *}" | pl_wrap 76 | sed 's/^/  /'
  echo
  printf '%s\n' "$PL_OUTPUT" | pl_wrap 78
  echo "Exit: 0 done; 2 usage; otherwise the failing tool's exit code, after naming the command." | pl_wrap 78
  echo "See 'man loco-$PL_PIPELINE' for the details."
}

pl_roff() { sed -e 's/\\/\\e/g' -e 's/-/\\-/g' -e "s/^'/\\\\(aq/" -e 's/^\./\\\&./'; }
pl_generate_man() {
  local page=loco-$PL_PIPELINE
  printf '.TH %s 7 "" "loco" "loco pipelines"\n.ad l\n' "$page"
  echo ".SH NAME"
  printf '%s \\- %s\n' "$page" "$(printf '%s' "$PL_TITLE" | pl_roff)"
  echo ".SH SYNOPSIS"
  printf '.B loco %s\n%s\n' "$PL_VERB" "$(printf '%s' "${PL_SYNOPSIS:---data FILE -o DIR [options]}" | pl_roff)"
  echo ".SH DESCRIPTION"
  printf '%s\n' "$PL_ABOUT" | pl_wrap 100 | pl_roff
  echo ".PP"
  printf 'Run as \\fBloco %s\\fR or \\fBloco\\-%s\\fR when installed, as \\fBscripts/%s\\fR in the source tree.\n' \
    "$PL_VERB" "$PL_VERB" "$PL_PIPELINE"
  echo ".SH OPTIONS"
  local i
  for i in $(pl_rows); do
    pl_shown "$i" || continue
    echo ".TP"
    printf '.B %s\n' "$(pl_option_label "$i" | pl_roff)"
    pl_option_text "$i" | pl_wrap 100 | pl_roff
    [[ ${PL_O_CLASS[i]} == result ]] && echo "Recorded in config.txt: a rerun with another value is refused."
  done
  echo ".TP"
  echo ".B \\-h, \\-\\-help"
  echo "Print the usage and exit."
  echo ".SH INTERNAL OPTIONS"
  echo "Used by the Slurm jobs: run one step and exit."
  for i in "${!PL_O_VAR[@]}"; do
    [[ ${PL_O_CLASS[i]} == internal ]] || continue
    echo ".TP"
    printf '.B %s\n' "$(pl_option_label "$i" | pl_roff)"
    printf '%s\n' "${PL_O_HELP[i]}" | pl_wrap 100 | pl_roff
  done
  echo ".SH OUTPUT FOLDER"
  printf '%s\n' "$PL_OUTPUT" | pl_wrap 100 | pl_roff
  echo ".SH EXIT STATUS"
  echo "0 done; 2 usage (or other options on an existing output folder); otherwise the failing tool's"
  echo "exit code, after naming the command."
  echo ".SH SEE ALSO"
  echo "docs/pipelines.md,"
  echo ".BR loco (1),"
  echo ".BR loco-format (5)"
}

pl_generate_markdown() {
  printf '### scripts/%s\n\n%s\n\n' "$PL_PIPELINE" "$PL_TITLE"
  echo "| option | default | fixes results | meaning |"
  echo "| --- | --- | --- | --- |"
  local i d
  for i in $(pl_rows); do
    pl_shown "$i" || continue
    d=$(pl_default_text "$i")
    printf '| `%s` | %s | %s | %s |\n' "$(pl_option_label "$i")" "${d:+\`$d\`}" \
      "$([[ ${PL_O_CLASS[i]} == result ]] && echo yes)" "${PL_O_HELP[i]//|/\\|}"
  done
  for i in $(printf '%s\n' "${!PL_FIXED[@]}" | sort -n); do  # in table order, whatever the hash order
    printf '\n`%s` is refused: %s\n' "${PL_O_NAMES[i]##*|}" "${PL_FIXED[$i]}"
  done
}

# pl_generate_completion CMD: the bash completion of this pipeline installed as CMD, the data of
# share/completion/loco.bash: every option a user may give, the words of choice and spec options.
pl_generate_completion() {
  local cmd=$1 i n names all=(-h --help) t
  for i in $(pl_rows); do
    pl_shown "$i" || continue
    IFS='|' read -r -a names <<<"${PL_O_NAMES[i]}"
    all+=("${names[@]}")
    t=${PL_O_TYPE[i]%!}
    [[ $t == flag ]] && continue
    for n in "${names[@]}"; do
      case $t in
        choice:*) printf "_LOCO_ARG['%s %s']='%s'\n" "$cmd" "$n" "$(tr '|' ' ' <<<"${t#choice:}")" ;;
        spec:*) printf "_LOCO_ARG['%s %s']='@%s'\n" "$cmd" "$n" "${t#spec:}" ;;
        *) printf "_LOCO_ARG['%s %s']=''\n" "$cmd" "$n" ;;
      esac
    done
  done
  printf "_LOCO_OPTS[%s]='%s'\n" "$cmd" "${all[*]}"
  printf 'complete -o default -F _loco_complete %s\n' "$cmd"
}

# One line per option a user may give: NAME<TAB>TYPE<TAB>CLASS<TAB>SAMPLE<TAB>DEFAULT, SAMPLE a value
# the parser takes (the default, or for a computed default '' or 1), DEFAULT as declared ('@...' for
# a computed one); tests/pipeline/test_options.py reads it.
pl_list_options() {
  local i n names
  for i in $(pl_rows); do
    [[ -n ${PL_FIXED[$i]+x} ]] && continue
    local s=${PL_O_DEF[i]}
    if [[ $s == @* ]]; then s=''; [[ ${PL_O_TYPE[i]%!} == posint ]] && s=1; fi
    IFS='|' read -r -a names <<<"${PL_O_NAMES[i]}"
    for n in "${names[@]}"; do
      printf '%s\t%s\t%s\t%s\t%s\n' "$n" "${PL_O_TYPE[i]}" "${PL_O_CLASS[i]}" "$s" "${PL_O_DEF[i]}"
    done
  done
}

# ---- config.txt: the options that fix the results ------------------------------------------------
pl_config_text() {
  echo "pipeline=$PL_KIND"
  local i
  for i in $(pl_rows); do
    [[ ${PL_O_CLASS[i]} == result ]] || continue
    local v=${PL_O_VAR[i]}
    printf '%s=%s\n' "$v" "${!v}"
  done
  if declare -F pl_config_extra >/dev/null; then pl_config_extra; fi
}
# The comparable form of a config text: sorted, with a line for every result option; a line missing
# from a folder's config.txt means the option's declared default (not a variant's pl_default), so a
# folder made before an option existed, or by a version that recorded it only when used, still
# matches a run with that option at its default. Adding an option keeps old folders resumable.
pl_config_filled() {
  local text line i d
  text=$(cat)
  declare -A have=()
  while IFS= read -r line; do have[${line%%=*}]=1; done <<<"$text"
  {
    printf '%s\n' "$text"
    for i in "${!PL_O_VAR[@]}"; do
      [[ ${PL_O_CLASS[i]} == result && -z ${have[${PL_O_VAR[i]}]+x} ]] || continue
      d=${PL_O_BASE[i]}
      [[ $d == @* ]] && d=''
      printf '%s=%s\n' "${PL_O_VAR[i]}" "$d"
    done
  } | LC_ALL=C sort
}
pl_check_config() {
  local want have
  want=$(pl_config_text)
  if [[ -f $out/config.txt ]]; then
    have=$(<"$out/config.txt")
    if [[ "$(pl_config_filled <<<"$have")" != "$(pl_config_filled <<<"$want")" ]]; then
      echo "$PL_NAME: error: $out was made with other options; differences (was > now):" >&2
      diff <(pl_config_filled <<<"$have") <(pl_config_filled <<<"$want") | grep '^[<>]' >&2 || true
      exit 2
    fi
  else
    mkdir -p "$out" || pl_die "cannot create $out"
    printf '%s\n' "$want" >"$out/.config.txt.tmp"
    mv -f "$out/.config.txt.tmp" "$out/config.txt"
  fi
}

# ---- tools -----------------------------------------------------------------------------------------
# The tools' folder: --tools, else $LOCO_BIN, else the installed tools beside an installed pipeline,
# else $LOCO_BUILD_DIR/bin (default build/bin) of the source tree, else PATH. Every tool of PL_TOOLS
# must be there.
pl_find_tools() {
  if [[ -z $tools ]]; then
    if [[ -n ${LOCO_BIN:-} ]]; then tools=$LOCO_BIN
    elif [[ -n $PL_INSTALLED_BIN && -x $PL_INSTALLED_BIN/loco-worker ]]; then tools=$PL_INSTALLED_BIN
    elif [[ -x ${LOCO_BUILD_DIR:-$PL_ROOT/build}/bin/loco-worker ]]; then tools=${LOCO_BUILD_DIR:-$PL_ROOT/build}/bin
    else tools=$(dirname "$(command -v loco-worker || echo /nonexistent/loco-worker)")
    fi
  fi
  tools=$(realpath -m -- "$tools")
  local t
  for t in "${PL_TOOLS[@]}"; do
    [[ -x $tools/$t || $dry_run -eq 1 ]] || pl_usage_error "$tools/$t not found: build loco or pass --tools DIR"
  done
}

# pl_run LOG TOOL ARGS...: runs a loco tool with its stderr appended to LOG, records the command
# in commands.log, and on failure names the command, shows the end of LOG and exits with its code.
pl_run() {
  local log=$1 tool=$2
  shift 2
  local cmd=("$tools/$tool" "$@") rc=0
  pl_log_command "${cmd[@]}"
  "${cmd[@]}" 2>>"$log" || rc=$?
  if [[ $rc -ne 0 ]]; then
    echo "$PL_NAME: error: command failed (exit $rc): $(printf '%q ' "${cmd[@]}")" >&2
    tail -n 5 "$log" | sed 's/^/  | /' >&2
    PL_EXIT=$rc
    exit "$rc"
  fi
}
pl_log_command() { printf '%s run %s\n' "$(date -u +%FT%TZ)" "$(printf '%q ' "$@")" >>"$out/commands.log"; }

# ---- executors ---------------------------------------------------------------------------------
# pl_parallel WHAT R FUNCTION ITEM...: FUNCTION R ITEM for every ITEM, at most --jobs at once; the
# others finish when one fails, then the run stops naming the failed ones (exit: the tool's code).
pl_parallel() {
  local what=$1 r=$2 fn=$3 item running=0 failed=0 done_pid
  shift 3
  declare -A who=()
  for item in "$@"; do
    if ((running >= jobs)); then
      wait -n -p done_pid || { failed=$?; pl_note "${unit_flag#--} $r: $what ${who[$done_pid]} failed"; }
      running=$((running - 1))
    fi
    ("$fn" "$r" "$item") &
    who[$!]=$item
    running=$((running + 1))
  done
  while ((running > 0)); do
    wait -n -p done_pid || { failed=$?; pl_note "${unit_flag#--} $r: $what ${who[$done_pid]} failed"; }
    running=$((running - 1))
  done
  [[ $failed -eq 0 ]] || PL_EXIT=$failed pl_die "${unit_flag#--} $r: a $what failed; rerun the same command to continue"
}

# The command a Slurm job runs for one step: this script with the run's options.
pl_self_cmd() { printf '%q ' "$PL_SELF" "${PL_ARGS[@]}" --tools "$tools" "$@"; }

pl_slurm_start() {
  if [[ $dry_run -eq 0 ]]; then
    pl_check_config
    mkdir -p "$out/slurm/logs"
    command -v sbatch >/dev/null || pl_die "sbatch not found: --executor $executor needs Slurm"
  fi
  PL_SB_EXTRA=()
  [[ -n $sbatch_args ]] && read -r -a PL_SB_EXTRA <<<"$sbatch_args"
  PL_TAG=$(basename "$out")
}
pl_slurm_end() {
  if [[ $dry_run -eq 1 ]]; then pl_note "dry run: nothing submitted"; else pl_note "submitted; the last job is $1"; fi
}

# pl_submit NAME DEPENDENCY BODY [sbatch options]: writes slurm/NAME.sbatch (BODY run by bash -e,
# the options as #SBATCH lines, every job requeueable and appending to its log) and submits it,
# waiting on DEPENDENCY (e.g. afterok:ID:ID; may be empty) with --kill-on-invalid-dep=yes, so a
# failed upstream job cancels the chain. Prints the job id (in a dry run, <NAME>, and the script).
pl_submit() {
  local name=$1 dep=$2 body=$3
  shift 3
  local file=$out/slurm/$name.sbatch log=%x-%j.out o
  [[ " $* " == *" --array="* ]] && log=%x-%A_%a.out
  local text="#!/usr/bin/env bash
#SBATCH --job-name=$name
#SBATCH --output=$out/slurm/logs/$log
#SBATCH --open-mode=append
#SBATCH --requeue"
  for o in "$@"; do text+=$'\n'"#SBATCH $o"; done
  text+=$'\n'"set -euo pipefail"$'\n'"$body"
  local opts=(--parsable --job-name="$name")
  [[ -n $dep ]] && opts+=(--dependency="$dep" --kill-on-invalid-dep=yes)
  opts+=("${PL_SB_EXTRA[@]}")
  if [[ $dry_run -eq 1 ]]; then
    printf '### sbatch %s %s\n%s\n\n' "${opts[*]}" "$file" "$text" >&2
    echo "<$name>"
  else
    printf '%s\n' "$text" >"$file"
    local id
    id=$(sbatch "${opts[@]}" "$file") || pl_die "sbatch failed for $file"
    printf '%s run sbatch %s %s -> %s\n' "$(date -u +%FT%TZ)" "${opts[*]}" "$file" "${id%%;*}" >>"$out/commands.log"
    echo "${id%%;*}"
  fi
}

# pl_slurm_rounds STEP ITEM-FLAG FIRST LAST AFTER: the Slurm executors of a pipeline whose unit
# (round or stage) is STEP for items FIRST..LAST, then the aggregate step. --executor slurm: a
# prepare job, per unit a job array (task id = the item) and an aggregate job waiting on it with
# AFTER (afterok, or afterany when a failed item counts as not finished), chained; a finalize
# job. --executor slurm-loop: one allocation of LAST-FIRST+1 tasks looping the units with srun.
pl_slurm_rounds() {
  local what=$1 flag=$2 first=$3 last=$4 after=$5 r prev cpu=(--ntasks=1 --cpus-per-task="$threads")
  pl_slurm_start
  if [[ $executor == slurm ]]; then
    prev=$(pl_submit "$PL_TAG-prepare" "" "$(pl_self_cmd --step prepare)" "${cpu[@]}")
    for ((r = 1; r <= units; r++)); do
      local stem arr
      stem=$PL_TAG-$unit_tag$(r4 "$r")
      arr=$(pl_submit "$stem-${what}s" "afterok:$prev" \
        "$(pl_self_cmd --step "$what" "$unit_flag" "$r") $flag \"\$SLURM_ARRAY_TASK_ID\"" \
        --array="$first-$last" "${cpu[@]}")
      prev=$(pl_submit "$stem-aggregate" "$after:$arr" "$(pl_self_cmd --step aggregate "$unit_flag" "$r")" "${cpu[@]}")
    done
    prev=$(pl_submit "$PL_TAG-finalize" "afterok:$prev" "$(pl_self_cmd --step finalize)" --ntasks=1)
  else
    prev=$(pl_submit "$PL_TAG-loop" "" "$(pl_self_cmd --step prepare)
for ((r = 1; r <= $units; r++)); do
  for ((w = $first; w <= $last; w++)); do
    srun --ntasks=1 --exact $(pl_self_cmd --step "$what") $unit_flag \"\$r\" $flag \"\$w\" &
  done
  fail=0
  for ((w = $first; w <= $last; w++)); do wait -n || fail=1; done
  [[ \$fail -eq 0 ]] || { echo \"${unit_flag#--} \$r: a $what failed\" >&2; exit 1; }
  $(pl_self_cmd --step aggregate) $unit_flag \"\$r\"
done
$(pl_self_cmd --step finalize)" --ntasks=$((last - first + 1)) --cpus-per-task="$threads")
  fi
  pl_slurm_end "$prev"
}

# ---- main --------------------------------------------------------------------------------------
# The options every pipeline has, declared where a pipeline's table calls this (its end); a
# pipeline may then change a default or the help by redeclaring. An option for all pipelines
# (say, another executor's setting) is added here, once.
pl_engine_options() {
  local PL_GROUP=engine
  pl_opt '-o|--output' out '' run 'dir!' DIR 'output folder, created; rerunning with the same DIR resumes'
  pl_opt --executor executor local local 'choice:local|slurm|slurm-loop' E \
    'local: steps as parallel processes; slurm: per round a job array of the steps that run in parallel and a dependent aggregation job, chained with afterok; slurm-loop: one allocation looping the rounds with srun'
  pl_opt --jobs jobs @nproc local posint J 'local: processes at once'
  pl_opt --threads threads '@nproc / min(J, processes a round), at least 1' run posint T 'threads per process'
  pl_opt --sbatch-args sbatch_args '' local str "'ARGS'" \
    "extra sbatch options for every job (e.g. '--partition=cpu --time=1:00:00')"
  pl_opt --tools tools "@\$LOCO_BIN, else the installed ones, else build/bin, else PATH" run dir DIR \
    'folder of the loco-* binaries'
  pl_opt --dry-run dry_run 0 local flag '' 'print what would run (for slurm: the batch scripts) and change nothing'
  pl_opt --step step '' internal str STEP 'the step to run (see --help)'
  pl_opt --round step_round '' internal str R 'the round of the step'
}

# pl_main "$@": parses, then runs one step (--step, the Slurm jobs) or the whole run.
pl_main() {
  pl_parse "$@"
  if st_used; then st_validate; fi
  if [[ -n $step ]]; then
    pl_check_config
    local spec a
    for spec in "${PL_STEPS[@]}"; do
      [[ ${spec%% *} == "$step" ]] || continue
      local args=()
      for a in ${spec#"$step"}; do
        case $a in
          unit)
            [[ $step_round =~ ^[1-9][0-9]*$ ]] || pl_usage_error "--step $step needs $unit_flag (1..$units)"
            ((step_round <= units)) || pl_usage_error "$unit_flag $step_round: the run has $units"
            args+=("$step_round") ;;
          unit0)
            [[ $step_round =~ ^[0-9]+$ ]] && ((step_round <= units)) || pl_usage_error "--step $step needs $unit_flag (0..$units)"
            args+=("$step_round") ;;
          *)  # an item variable set by the pipeline's internal option, in PL_ITEM_FIRST..PL_ITEM_LAST
            [[ ${!a} =~ ^[0-9]+$ ]] && ((${!a} >= PL_ITEM_FIRST && ${!a} <= PL_ITEM_LAST)) ||
              pl_usage_error "--step $step needs ${PL_ITEM_FLAG} ($PL_ITEM_FIRST..$PL_ITEM_LAST)"
            args+=("${!a}") ;;
        esac
      done
      "step_$step" "${args[@]}"
    done
    return 0
  fi
  if [[ -n ${store-} ]]; then st_main; return 0; fi
  if [[ $executor == local ]]; then
    if [[ $dry_run -eq 1 ]]; then
      pl_note "dry run: would write $out with"
      pl_config_text | sed 's/^/  /' >&2
      pl_note "  threads per process: $threads, parallel processes: $jobs, tools: $tools"
      if declare -F pl_dry_run_note >/dev/null; then pl_dry_run_note; fi
      return 0
    fi
    pl_check_config
    run_local
  else
    run_slurm
  fi
}
