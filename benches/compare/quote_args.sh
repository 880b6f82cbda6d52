# Sourced by benches/compare.sh and benches/faults.sh: quote_args ARGS...
# prints the arguments as one shell line, quoting only those that need it
# (for the command line a results header records).
quote_args() {
  local a out=""
  for a in "$@"; do
    if [[ "$a" =~ ^[A-Za-z0-9_./,:=+%@-]+$ ]]; then out+="$a "; else out+="$(printf '%q' "$a") "; fi
  done
  echo "${out% }"
}
