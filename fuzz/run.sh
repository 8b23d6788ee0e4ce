#!/bin/sh
# Run every fuzz target for SECONDS each (default 60). Needs the nightly
# toolchain and cargo-fuzz (`cargo install cargo-fuzz`). A crash leaves its
# input in fuzz/artifacts/TARGET/: turn it into a plain regression test
# beside the code it broke, then fix the code.
set -eu
seconds=${1:-60}
cd "$(dirname "$0")"
for target in control maps ring record; do
    echo "== $target ($seconds s)"
    cargo +nightly fuzz run "$target" -- -max_total_time="$seconds" -rss_limit_mb=4096
done
