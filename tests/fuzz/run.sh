#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) and runs them for a
# bounded total time (default 60 s, split between them: two thirds for the
# DNS message target, one third for the Corefile parser), each from its seed
# corpus (tests/fuzz/corpus, tests/fuzz/corpus_corefile).
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
corefile_seconds=$((seconds / 3))
if [ "$corefile_seconds" -lt 1 ]; then corefile_seconds=1; fi
message_seconds=$((seconds - corefile_seconds))
if [ "$message_seconds" -lt 1 ]; then message_seconds=1; fi
out=build/fuzz
mkdir -p "$out/corpus" "$out/corpus_corefile"
cp -n tests/fuzz/corpus/* "$out/corpus/" 2>/dev/null || true
cp -n tests/fuzz/corpus_corefile/* "$out/corpus_corefile/" 2>/dev/null || true
flags=(-std=c++2b -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
  -Iinclude -I/usr/include)
clang++-14 "${flags[@]}" \
  tests/fuzz/message_fuzz.cpp src/dns/name.cpp src/dns/message.cpp src/dns/builder.cpp \
  src/cache/cache_policy.cpp src/cache/packet_cache.cpp \
  -o "$out/message_fuzz"
clang++-14 "${flags[@]}" tests/fuzz/corefile_fuzz.cpp src/config/corefile_syntax.cpp \
  -o "$out/corefile_fuzz"

# Progress goes to a log; a failure prints its tail, the crash input is kept.
run() {
  local name=$1 secs=$2 corpus=$3 max_len=$4
  shift 4
  if ! "$out/$name" -max_total_time="$secs" -max_len="$max_len" -print_final_stats=1 "$@" \
      -artifact_prefix="$out/$name-" "$out/$corpus" > "$out/$name.log" 2>&1; then
    tail -n 60 "$out/$name.log"
    echo "fuzzing $name found a failure; input saved as $out/$name-crash-*" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|new_units_added)|^Done' "$out/$name.log" || true
  echo "fuzzing $name: no failure in ${secs} s"
}
run message_fuzz "$message_seconds" corpus 2048
run corefile_fuzz "$corefile_seconds" corpus_corefile 4096 -dict=tests/fuzz/corefile.dict
