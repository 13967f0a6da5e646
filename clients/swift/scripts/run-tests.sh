#!/usr/bin/env bash
# Runs the Swift SDK's XCTest target (golden vectors and the seven client-harness scenarios) on a
# machine with a Swift toolchain (Xcode 14+ on macOS 12+, or Swift 5.7+ on Linux). It builds the
# conformance harness with cargo first, so Rust must be installed too.
#
#   clients/swift/scripts/run-tests.sh            # everything
#   clients/swift/scripts/run-tests.sh --filter VectorTests
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
command -v swift >/dev/null || { echo "run-tests.sh: no swift toolchain on PATH" >&2; exit 2; }
swift --version
export CHATWIRE_REPO_ROOT="$root"
if [[ -z "${CHATWIRE_CONFORMANCE:-}" ]]; then
    (cd "$root" && cargo build -q -p chatwire-conformance)
    target="${CARGO_TARGET_DIR:-$root/target}"
    export CHATWIRE_CONFORMANCE="$target/debug/chatwire-conformance"
fi
cd "$here"
swift build --build-tests
swift test "$@"
