#!/usr/bin/env bash
# Builds localdns with warnings as errors and runs every test (unit, integration).
#   scripts/test.sh           the ci preset
#   scripts/test.sh asan      AddressSanitizer + UndefinedBehaviorSanitizer
#   scripts/test.sh tsan      ThreadSanitizer
# Without root the netns and end-to-end tests report "skipped"; with CI=true
# they fail instead (see tests/CMakeLists.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
preset="${1:-ci}"
scripts/install-deps.sh
cmake --preset "$preset"
cmake --build --preset "$preset" -j "$(nproc)"
ctest --preset "$preset" -j "$(nproc)" --no-tests=error
