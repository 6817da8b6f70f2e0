#!/usr/bin/env bash
# Multi-node load figure: segment requests with every check on (ticket-derived session
# token, rights from the store through the decision cache, session touch), on the embedded
# store against the shared PostgreSQL store, in interleaved rounds:
#   sqlite    1 node, the embedded default
#   postgres  1 node, store.backend = "postgres"
#   2 nodes   2 nodes on the same PostgreSQL, each loaded by its own wrk at once
#             (half the connections each), the sum of both
#
#   benches/multinode.sh [SECONDS] [CONNECTIONS] [ROUNDS]
#
# Needs wrk and Debian's postgresql (a throwaway server on a free loopback port, in a temp
# dir, run as the postgres user when started as root, stopped at the end). All traffic
# goes to 127.0.0.1. Prints req/s per round, the medians, and postgres/sqlite.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
connections=${2:-32}
rounds=${3:-3}
command -v wrk >/dev/null || { echo "benches/multinode.sh: needs wrk" >&2; exit 1; }
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort | tail -1)
[ -x "$pgbin/postgres" ] || { echo "benches/multinode.sh: needs postgresql" >&2; exit 1; }

cargo build --release --quiet
work=$(mktemp -d)
chmod 755 "$work"
pids=()
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -m fast -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/pg"
[ "$(id -u)" -eq 0 ] && chown postgres "$work/pg"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg "$pgbin/initdb" -D "$work/pg/data" -A trust -U usher -E UTF8 --no-sync >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
url="postgres://usher@127.0.0.1:$port/postgres"

sed -e "s|^origin = \"../demo\"|origin = \"$PWD/demo\"|" config/usher.toml > "$work/sqlite.toml"
sed -e "s|^backend = \"sqlite\"|backend = \"postgres\"|" "$work/sqlite.toml" > "$work/postgres.toml"
printf '\n[store.postgres]\nurl = "%s"\n' "$url" >> "$work/postgres.toml"
# [store.postgres] must follow [store]: move it there.
python3 - "$work/postgres.toml" <<'EOF'
import sys
p = sys.argv[1]
s = open(p).read()
block = s[s.rindex("\n[store.postgres]"):]
s = s[: s.rindex("\n[store.postgres]")]
i = s.index("\n[rights]")
open(p, "w").write(s[:i] + block + s[i:])
EOF

start() { # name config -> usher in the background; its play URL in $work/NAME.play
  local name=$1 config=$2 out="$work/$1.out"
  RUST_LOG=warn ./target/release/usher serve --config "$config" \
    --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$work/data-$name" >"$out" 2>"$work/$name.err" &
  pids+=($!)
  for _ in $(seq 100); do grep -q '^play: ' "$out" 2>/dev/null && break; sleep 0.1; done
  grep -q "^play: " "$out" || { echo "usher $name did not start:" >&2; cat "$work/$name.err" >&2; exit 1; }
  grep '^play: ' "$out" | cut -d' ' -f2 > "$work/$name.play"
}

segment_url() { # play URL -> URL of the first 360p segment, with its session token
  local play=$1 base=${1%%\?*}
  local variant media_url seg
  variant=$(curl -fsS "$play" | grep -m1 '^360p/')
  media_url="${base%/*}/$variant"
  seg=$(curl -fsS "$media_url" | grep -m1 '^seg_')
  echo "${media_url%%/index.m3u8*}/$seg"
}

start sqlite "$work/sqlite.toml"
start pg1 "$work/postgres.toml"
start pg2 "$work/postgres.toml"
declare -A seg
for name in sqlite pg1 pg2; do
  seg[$name]=$(segment_url "$(cat "$work/$name.play")")
  curl -fsS -o /dev/null "${seg[$name]}"
done

rate() { wrk -t1 -c"$1" -d"${seconds}s" "$2" | awk '/^Requests\/sec/ {print $2}'; }
declare -A runs=([sqlite]="" [postgres]="" [two]="")
for round in $(seq "$rounds"); do
  r=$(rate "$connections" "${seg[sqlite]}"); runs[sqlite]+="$r "
  echo "round $round sqlite: $r req/s"
  r=$(rate "$connections" "${seg[pg1]}"); runs[postgres]+="$r "
  echo "round $round postgres: $r req/s"
  half=$((connections / 2))
  rate "$half" "${seg[pg1]}" > "$work/a" & a=$!
  rate "$half" "${seg[pg2]}" > "$work/b" & b=$!
  wait $a $b
  r=$(awk '{s += $1} END {print s}' "$work/a" "$work/b"); runs[two]+="$r "
  echo "round $round 2 nodes: $r req/s ($(cat "$work/a") + $(cat "$work/b"))"
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
s=$(median "${runs[sqlite]}"); p=$(median "${runs[postgres]}"); t=$(median "${runs[two]}")
awk -v s="$s" -v p="$p" -v t="$t" 'BEGIN {
  printf "median sqlite %.0f req/s, postgres %.0f req/s (%.1f%% of sqlite), 2 nodes %.0f req/s (%.2fx one postgres node)\n", s, p, 100*p/s, t, t/p }'
for name in pg1 pg2; do
  admin=$(grep '^admin on ' "$work/$name.out" | cut -d' ' -f3)
  ops=$(curl -fsS "$admin/metrics" | awk '/^usher_store_duration_seconds_count/ {n += $2} END {print n + 0}')
  echo "$name: $ops store operations in all (the segment path makes none per request)"
done
