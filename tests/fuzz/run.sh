#!/usr/bin/env bash
# Builds the libFuzzer target with clang (ASan + UBSan) and runs it for a
# bounded time (default 60 s), starting from the seed corpus in tests/fuzz/corpus.
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
out=build/fuzz
mkdir -p "$out/corpus"
cp -n tests/fuzz/corpus/* "$out/corpus/" 2>/dev/null || true
clang++-14 -std=c++2b -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Iinclude -I/usr/include \
  tests/fuzz/message_fuzz.cpp src/dns/name.cpp src/dns/message.cpp src/dns/builder.cpp \
  src/cache/cache_policy.cpp src/cache/packet_cache.cpp \
  -o "$out/message_fuzz"
# Progress goes to a log; a failure prints its tail, the crash input is kept.
if ! "$out/message_fuzz" -max_total_time="$seconds" -max_len=2048 -print_final_stats=1 \
    -artifact_prefix="$out/" "$out/corpus" > "$out/log" 2>&1; then
  tail -n 60 "$out/log"
  echo "fuzzing found a failure; input saved as $out/crash-*" >&2
  exit 1
fi
grep -E '^stat::(number_of_executed_units|new_units_added)|^Done' "$out/log" || true
echo "fuzzing: no failure in ${seconds} s"
