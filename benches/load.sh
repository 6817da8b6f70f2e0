#!/usr/bin/env bash
# Whole-server load figure: segment requests through usher with the rights check on
# (rights.source = "store") against the same usher with it off (rights.source = "none"),
# side by side in one run, same binary, same demo segment, same session token path.
#
#   benches/load.sh [SECONDS] [CONNECTIONS]
#
# Needs wrk (Debian package `wrk`). Traffic goes to 127.0.0.1 only; each wrk run is bounded
# by SECONDS. Prints requests/s for each and the ratio on/off.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-32}
command -v wrk >/dev/null || { echo "benches/load.sh: needs wrk (apt-get install wrk)" >&2; exit 1; }

cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Two configs from the shipped one: the demo stream from the bundled directory, rights on
# and off. The demo subject owns the demo product in both stores.
for mode in store none; do
  sed -e "s|^source = \"store\"|source = \"$mode\"|" \
      -e "s|^origin = \"../demo\"|origin = \"$PWD/demo\"|" \
      config/usher.toml > "$work/$mode.toml"
done

start() { # mode -> prints the play URL
  local mode=$1 out="$work/$1.out"
  RUST_LOG=warn ./target/release/usher serve --config "$work/$mode.toml" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$work/data-$mode" >"$out" 2>"$work/$mode.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^play: ' "$out" 2>/dev/null && break; sleep 0.1; done
  grep '^play: ' "$out" | cut -d' ' -f2
}

segment_url() { # play URL -> URL of the first 360p segment, with its session token
  local play=$1 base=${1%%\?*}
  local variant
  variant=$(curl -fsS "$play" | grep -m1 '^360p/')
  local media_url="${base%/*}/$variant"
  local seg
  seg=$(curl -fsS "$media_url" | grep -m1 '^seg_')
  echo "${media_url%%/index.m3u8*}/$seg"
}

declare -A url
for mode in store none; do
  url[$mode]=$(segment_url "$(start $mode)")
  curl -fsS -o /dev/null "${url[$mode]}"
done

rate() { wrk -t1 -c"$connections" -d"${seconds}s" "$1" | awk '/^Requests\/sec/ {print $2}'; }
declare -A total=([store]=0 [none]=0)
for round in 1 2; do
  for mode in none store; do
    r=$(rate "${url[$mode]}")
    echo "round $round rights=$mode: $r req/s"
    total[$mode]=$(awk -v a="${total[$mode]}" -v b="$r" 'BEGIN {print a + b}')
  done
done
awk -v on="${total[store]}" -v off="${total[none]}" \
  'BEGIN {printf "rights on: %.0f req/s, off: %.0f req/s, ratio on/off: %.1f%%\n", on/2, off/2, 100*on/off}'
