# Bash completion of loco, its tools and its pipelines. The build appends to this file the data each
# command generates from its own option table (a tool's --generate-completion, a pipeline's
# --generate-completion NAME), so the completion cannot drift from the options:
#   _LOCO_OPTS[CMD]='--opt -o ...'         the options of CMD
#   _LOCO_ARG['CMD --opt']='w1 w2'         --opt takes a value; the words completed for it ('' none)
#   _LOCO_ARG['CMD --opt']='@CMD2 --opt2'  the words of another command's option
# and registers every CMD with `complete -o default -F _loco_complete CMD` (-o default: file names
# where no word applies). Installed as share/bash-completion/completions/loco, with a link per
# command, so bash-completion loads it on demand for any of them.
# shellcheck shell=bash

declare -gA _LOCO_OPTS=() _LOCO_ARG=()

# _loco_candidates CMD PREV CUR: COMPREPLY for the word CUR after PREV on CMD's command line.
_loco_candidates() {
  local cmd=$1 prev=$2 cur=$3 words w
  COMPREPLY=()
  if [[ -n ${_LOCO_ARG["$cmd $prev"]+x} ]]; then
    words=${_LOCO_ARG["$cmd $prev"]}
    [[ $words == @* ]] && words=${_LOCO_ARG["${words#@}"]-}
    # A spec's stage after '+' (topk:density=0.01+quant) is completed like the first.
    local head='' tail=$cur
    if [[ $cur == *+* ]]; then head=${cur%+*}+ tail=${cur##*+}; fi
    for w in $words; do [[ $w == "$tail"* ]] && COMPREPLY+=("$head$w"); done
  elif [[ $cur == -* ]]; then
    for w in ${_LOCO_OPTS[$cmd]-}; do [[ $w == "$cur"* ]] && COMPREPLY+=("$w"); done
  fi
}

# The verbs of `loco`: help, and every loco-* command on PATH.
_loco_verbs() {
  local c
  echo help
  for c in $(compgen -c loco-); do echo "${c#loco-}"; done | sort -u
}

_loco_complete() {
  local cmd=${1##*/} line=${COMP_LINE:0:COMP_POINT} cur prev words
  # The words as the user typed them: ':' and '=' (in COMP_WORDBREAKS) split COMP_WORDS inside a spec.
  read -r -a words <<<"$line"
  if [[ -z $line || $line == *[[:space:]] ]]; then words+=(''); fi
  cur=${words[-1]}
  prev=''
  ((${#words[@]} > 1)) && prev=${words[-2]}
  if [[ $cmd == loco ]]; then
    if ((${#words[@]} == 2)) || [[ ${#words[@]} == 3 && ${words[1]} == help ]]; then
      local v
      COMPREPLY=()
      if [[ $cur == -* ]]; then
        for v in --list --help --version; do [[ $v == "$cur"* ]] && COMPREPLY+=("$v"); done
      else
        for v in $(_loco_verbs); do [[ $v == "$cur"* ]] && COMPREPLY+=("$v"); done
      fi
      return 0
    fi
    ((${#words[@]} > 2)) && [[ ${words[1]} != help ]] && cmd=loco-${words[1]}
    ((${#words[@]} == 3)) && prev=''
  fi
  _loco_candidates "$cmd" "$prev" "$cur"
  # bash replaces only the part of the word after its last ':' or '=': drop what precedes it.
  local keep=${cur%"${cur##*[:=]}"}
  if [[ -n $keep && $COMP_WORDBREAKS == *[:=]* ]]; then
    local i
    for i in "${!COMPREPLY[@]}"; do COMPREPLY[i]=${COMPREPLY[i]#"$keep"}; done
  fi
  return 0
}
complete -o default -F _loco_complete loco
