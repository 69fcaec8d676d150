#!/usr/bin/env bash
# The test command: installs what is missing, builds, runs every suite (unit, e2e, fuzz replay).
# Needs root (network namespaces for the e2e suite). Extra arguments go to `meson test`,
# e.g. `tests/run.sh --suite e2e`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" != 0 ]; then echo "tests/run.sh needs root (network namespaces, DPDK)"; exit 1; fi
deploy/install-deps.sh
deploy/build.sh
rc=0
meson test -C build --print-errorlogs --num-processes 2 "$@" || rc=$?
# One plain summary line from meson's test log.
/usr/bin/python3 - <<'PY'
import json
counts = {"OK": 0, "FAIL": 0, "SKIP": 0, "TIMEOUT": 0, "ERROR": 0, "EXPECTEDFAIL": 0, "UNEXPECTEDPASS": 0}
with open("build/meson-logs/testlog.json") as f:
    for line in f:
        r = json.loads(line)
        counts[r["result"]] = counts.get(r["result"], 0) + 1
failed = counts["FAIL"] + counts["TIMEOUT"] + counts["ERROR"] + counts["UNEXPECTEDPASS"]
print(f"{counts['OK'] + counts['EXPECTEDFAIL']} passed, {failed} failed, {counts['SKIP']} skipped")
PY
exit $rc
