#!/usr/bin/env bash
# bench_dedup.sh: times `sft data dedup` (exact + near, default threshold 0.8)
# on 100k instruction records built from the fixtures' real-text corpus.
# usage: bench/bench_dedup.sh [N] [BUILD]   (from the repository root)
set -eu
n=${1:-100000}
build=${2:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 bench/bench_dedup_data.py "$n" "$tmp/in.jsonl"
echo "input: $n records, $(du -m "$tmp/in.jsonl" | cut -f1) MB, $(nproc) cores"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/time -f "dedup: %e s wall, %U s CPU (user, all threads), peak memory %M KB" \
  "$build/sft" data dedup "$tmp/in.jsonl" -o "$tmp/out.jsonl" --report "$tmp/clusters.jsonl" --quiet
