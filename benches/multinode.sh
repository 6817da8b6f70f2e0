#!/usr/bin/env bash
# Multi-node load figure: segment requests with every check on (ticket-derived session
# token, rights from the store through the decision cache, session touch), on the embedded
# default against the shared backends, in interleaved rounds:
#   sqlite    1 node, the embedded default (SQLite, sessions in memory)
#   shared    1 node, store.backend = "postgres" and sessions.backend = "redis"
#   2 nodes   2 such nodes on the same PostgreSQL and Redis, each loaded by its own wrk at
#             once (half the connections each), the sum of both
#
#   benches/multinode.sh [SECONDS] [CONNECTIONS] [ROUNDS]
#
# Needs wrk, Debian's postgresql and redis-server (throwaway servers on free loopback ports
# in a temp dir, PostgreSQL run as the postgres user when started as root, both stopped at
# the end). All traffic goes to 127.0.0.1. Prints req/s and p99 latency per round, the
# medians, shared/sqlite, and how many backend calls the nodes made in all.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
connections=${2:-32}
rounds=${3:-3}
for tool in wrk redis-server redis-cli; do
  command -v "$tool" >/dev/null || { echo "benches/multinode.sh: needs $tool" >&2; exit 1; }
done
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
PORTS_TAKEN=$work/ports.taken
source benches/support/ports.sh

mkdir -p "$work/pg"
[ "$(id -u)" -eq 0 ] && chown postgres "$work/pg"
port=$(free_port)
as_pg "$pgbin/initdb" -D "$work/pg/data" -A trust -U usher -E UTF8 --no-sync >/dev/null
as_pg "$pgbin/pg_ctl" -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-p $port -k $work/pg -c listen_addresses=127.0.0.1" start >/dev/null
rport=$(free_port)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --logfile "$work/redis.log" &
pids+=($!)
for _ in $(seq 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done

sed -e "s|^origin = \"../demo\"|origin = \"$PWD/demo\"|" config/usher.toml > "$work/sqlite.toml"
# The shared config: [store] backend and [store.postgres] before [rights]; [sessions]
# backend and [sessions.redis] after the [sessions] table.
python3 - "$work/sqlite.toml" "$work/shared.toml" "postgres://usher@127.0.0.1:$port/postgres" "redis://127.0.0.1:$rport" <<'PY'
import sys
src, dst, pg, redis = sys.argv[1:]
s = open(src).read().replace('backend = "sqlite"', 'backend = "postgres"', 1)
i = s.index("\n[rights]")
s = s[:i] + f'\n[store.postgres]\nurl = "{pg}"\n' + s[i:]
i = s.index("\n[sessions]\n") + len("\n[sessions]\n")
s = s[:i] + s[i:].replace('backend = "memory"', 'backend = "redis"', 1)
j = s.find("\n[", i)
j = len(s) if j < 0 else j
s = s[:j] + f'\n[sessions.redis]\nurl = "{redis}"\n' + s[j:]
open(dst, "w").write(s)
PY

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
start node1 "$work/shared.toml"
start node2 "$work/shared.toml"
declare -A seg
for name in sqlite node1 node2; do
  seg[$name]=$(segment_url "$(cat "$work/$name.play")")
  curl -fsS -o /dev/null "${seg[$name]}"
done

rate() { # connections url -> "req/s p99_ms"
  wrk -t1 -c"$1" -d"${seconds}s" --latency "$2" | awk '
    /^Requests\/sec/ {r = $2}
    /^ +99%/ {
      v = $2
      if (v ~ /us$/) { sub(/us$/, "", v); v /= 1000 }
      else if (v ~ /ms$/) { sub(/ms$/, "", v) }
      else if (v ~ /s$/) { sub(/s$/, "", v); v *= 1000 }
      p = v
    }
    END {print r, p}'
}
declare -A runs=([sqlite]="" [shared]="" [two]="")
declare -A p99=([sqlite]="" [shared]="")
for round in $(seq "$rounds"); do
  read -r r l <<<"$(rate "$connections" "${seg[sqlite]}")"
  runs[sqlite]+="$r "; p99[sqlite]+="$l "
  echo "round $round sqlite: $r req/s, p99 $l ms"
  read -r r l <<<"$(rate "$connections" "${seg[node1]}")"
  runs[shared]+="$r "; p99[shared]+="$l "
  echo "round $round shared: $r req/s, p99 $l ms"
  half=$((connections / 2))
  rate "$half" "${seg[node1]}" > "$work/a" & a=$!
  rate "$half" "${seg[node2]}" > "$work/b" & b=$!
  wait $a $b
  r=$(awk '{s += $1} END {print s}' "$work/a" "$work/b"); runs[two]+="$r "
  echo "round $round 2 nodes: $r req/s ($(cut -d' ' -f1 "$work/a") + $(cut -d' ' -f1 "$work/b"))"
done
median() { tr ' ' '\n' <<<"$1" | grep . | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
s=$(median "${runs[sqlite]}"); p=$(median "${runs[shared]}"); t=$(median "${runs[two]}")
ls=$(median "${p99[sqlite]}"); lp=$(median "${p99[shared]}")
awk -v s="$s" -v p="$p" -v t="$t" -v ls="$ls" -v lp="$lp" 'BEGIN {
  printf "median sqlite %.0f req/s (p99 %.2f ms), shared %.0f req/s (p99 %.2f ms; %.1f%% of sqlite), 2 nodes %.0f req/s (%.2fx one shared node)\n", s, ls, p, lp, 100*p/s, t, t/p }'
for name in node1 node2; do
  admin=$(grep '^admin on ' "$work/$name.out" | cut -d' ' -f3)
  metrics=$(curl -fsS "$admin/metrics")
  ops=$(awk '/^usher_store_duration_seconds_count/ {n += $2} END {print n + 0}' <<<"$metrics")
  calls=$(awk '/^usher_sessions_backend_duration_seconds_count/ {n += $2} END {print n + 0}' <<<"$metrics")
  echo "$name: $ops PostgreSQL operations and $calls Redis calls in all"
done
