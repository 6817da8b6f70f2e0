#!/usr/bin/env bash
# Whole-server load figure: segment requests through usher with the checks on against the
# same usher with them off, side by side in one run, same binary, same demo segment:
#   none     rights.source = "none": signature, window, scope only
#   store    + the cached rights check and the session touch
#   devices  + a device id on every request (hashed, compared with the token's) and
#            session tokens bound to the client's network (sessions.bind_ip)
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
for mode in store none devices; do
  source=$mode; [ "$mode" = devices ] && source=store
  sed -e "s|^source = \"store\"|source = \"$source\"|" \
      -e "s|^origin = \"../demo\"|origin = \"$PWD/demo\"|" \
      config/usher.toml > "$work/$mode.toml"
  [ "$mode" = devices ] && sed -i 's/^bind_ip = false/bind_ip = true/' "$work/$mode.toml"
done
device_header=(-H "X-Device-Id: bench-tv")

start() { # mode -> starts usher (in this shell, so cleanup can stop it); play URL in $work/MODE.play
  local mode=$1 out="$work/$1.out"
  RUST_LOG=warn ./target/release/usher serve --config "$work/$mode.toml" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$work/data-$mode" >"$out" 2>"$work/$mode.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^play: ' "$out" 2>/dev/null && break; sleep 0.1; done
  grep '^play: ' "$out" | cut -d' ' -f2 > "$work/$mode.play"
}

segment_url() { # play URL, curl args -> URL of the first 360p segment, with its session token
  local play=$1 base=${1%%\?*}; shift
  local variant
  variant=$(curl -fsS "$@" "$play" | grep -m1 '^360p/')
  local media_url="${base%/*}/$variant"
  local seg
  seg=$(curl -fsS "$@" "$media_url" | grep -m1 '^seg_')
  echo "${media_url%%/index.m3u8*}/$seg"
}

declare -A url
for mode in none store devices; do
  args=(); [ "$mode" = devices ] && args=("${device_header[@]}")
  start "$mode"
  url[$mode]=$(segment_url "$(cat "$work/$mode.play")" "${args[@]}")
  curl -fsS -o /dev/null "${args[@]}" "${url[$mode]}"
done

rate() { wrk -t1 -c"$connections" -d"${seconds}s" "$@" | awk '/^Requests\/sec/ {print $2}'; }
declare -A total=([none]=0 [store]=0 [devices]=0)
for round in 1 2; do
  for mode in none store devices; do
    args=(); [ "$mode" = devices ] && args=("${device_header[@]}")
    r=$(rate "${args[@]}" "${url[$mode]}")
    echo "round $round $mode: $r req/s"
    total[$mode]=$(awk -v a="${total[$mode]}" -v b="$r" 'BEGIN {print a + b}')
  done
done
for mode in store devices; do
  awk -v on="${total[$mode]}" -v off="${total[none]}" -v m="$mode" \
    'BEGIN {printf "%s: %.0f req/s against none: %.0f req/s, ratio %.1f%%\n", m, on/2, off/2, 100*on/off}'
done
