#!/usr/bin/env bash
# Bootstrap for a fresh Debian machine (as root): installs pnpm, the Node dependencies and the
# lab's Debian packages when missing, then runs the lab (`pnpm lab "$@"`, without pnpm between). `./lab.sh test` runs the test
# suite and ends with the line "N passed, N failed, N skipped" computed from vitest's JSON.
set -euo pipefail
caller_cwd=$PWD
cd "$(dirname "$(readlink -f "$0")")"

# Node ≥ 20 and npm are the one thing the lab does not install (bookworm's own nodejs is 18)
node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if [ "$node_major" -lt 20 ] || ! command -v npm >/dev/null 2>&1; then
  echo "error: the lab needs Node.js 20 or newer with npm on PATH (found: $(node --version 2>/dev/null || echo none))" >&2
  echo "  fix: install Node.js 20+ (e.g. from nodejs.org or NodeSource; Debian bookworm's nodejs is 18), then run this again" >&2
  exit 1
fi
if ! command -v pnpm >/dev/null 2>&1; then
  # corepack cannot verify pnpm from this registry; npm can install it
  npm install -g --silent pnpm@10 >/dev/null
fi
if [ ! -d node_modules/.pnpm ] || [ pnpm-lock.yaml -nt node_modules/.modules.yaml ]; then
  CI=true pnpm install --frozen-lockfile --reporter=silent
fi

if [ "${1:-}" = "test" ]; then
  shift
  pnpm -s lab setup >/dev/null
  bg=""
  if [ $# -eq 0 ]; then
    # virtme-ng from PyPI (~5 s), so CI runs the --vm-backend vng tests too; without PyPI they skip
    pnpm -s lab setup vng >/dev/null 2>&1 || echo "virtme-ng could not be installed (pnpm lab setup vng): its tests are skipped"
    # The whole suite: the tracing backends (Jaeger is a Go build, 4-8 min cold on 2 cores) build
    # in the background at idle priority while the tests that do not need them run; the tests that
    # do run last (vitest.config.ts) and wait for it. Before it, the VM kernels the suite boots are
    # fetched the same way (download, verify, extract: ~1 min cold, which the matrix test paid in
    # its critical path); a test that needs one meanwhile fetches it itself (each fetch extracts
    # into a directory of its own and renames it into place). Cached ones return at once.
    mkdir -p .cache
    echo "fetching VM kernels and building the tracing backends in the background at idle priority (log: .cache/setup-tracing.log)"
    setsid chrt -i 0 sh -c 'pnpm -s lab vm fetch 6.1 5.10 6.12 7.x; pnpm -s lab setup tracing' >.cache/setup-tracing.log 2>&1 </dev/null &
    bg=$!
    trap 'kill -TERM -- -"$bg" 2>/dev/null || true' EXIT
  fi
  rm -f .vitest/results.json
  set +e
  pnpm -s exec vitest run "$@"
  rc=$?
  set -e
  node -e '
    const fs = require("fs");
    let r = {};
    try { r = JSON.parse(fs.readFileSync(".vitest/results.json", "utf8")); } catch {}
    const p = r.numPassedTests ?? 0, s = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
    // a file whose setup threw (beforeAll, an import) fails no test: its tests are left pending,
    // and it read as "0 failed" with vitest exiting 1. Each such file counts as one failure
    const broken = (r.testResults ?? []).filter((t) => t.status === "failed" && !(t.assertionResults ?? []).some((a) => a.status === "failed"));
    for (const t of broken) console.log(`failed outside its tests (an import, setup or teardown): ${t.name}${t.message ? ` (${t.message.split("\n")[0].slice(0, 200)})` : ""}`);
    const f = (r.numFailedTests ?? 0) + broken.length;
    if (!r.numTotalTests) console.log("no test results (vitest did not run)");
    console.log(`${p} passed, ${f} failed, ${s} skipped`);
  '
  exit $rc
fi

# package.json's "lab" script, without pnpm in between: the run is this process, so a signal to it
# reaches the run once and the caller waits for its cleanup (pnpm returns before its child has
# stopped)
# (relative paths in the arguments are the caller's: lab/cli.ts works from the directory it was called in)
EBPF_LAB_CALLER_CWD=$caller_cwd exec node --no-memory-reducer --import tsx lab/cli.ts "$@"
