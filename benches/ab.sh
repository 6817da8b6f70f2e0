#!/usr/bin/env bash
# usher builds against each other at 1 KiB (or 188 KB), beside nginx's edge, nginx static
# and the bare floor: the A/B run every hot-path change in issue 12 was measured with.
#
#   VARIANTS="before:/tmp/usher-before after:target/release/usher" \
#     benches/ab.sh [SECONDS] [ROUNDS] [CONNECTIONS]          (defaults 8, 5, 64)
#
# Each variant is an usher binary, started with the shipped config and an nginx origin as
# its upstream, over 1,000 distinct 1 KiB objects (the 1 KiB case of benches/vs_nginx.sh) or,
# with OBJECT=big, 1,000 distinct 188 KB segments (its 188 KB case).
# Rounds are interleaved: each round runs `wrk -t2 -c64` against every server in turn. Per
# run it prints requests/s, requests per server CPU-second, and the user and system
# microseconds per request (from /proc). On this VM single rounds of one build against
# itself differ by up to 15 %: compare medians of 5 rounds or more, and say the spread.
#
# Options, as environment variables:
#   OBJECT=big      the 188 KB segments instead of the 1 KiB objects
#   EDGE=0          leave nginx's edge (secure_link + proxy_cache) out (default: in)
#   STATIC=1        add nginx static (the files from disk with sendfile)
#   H2=1            load with `h2load -t2 -c16 -m8` (h2c) instead of wrk
#   TLS=1           the same h2load, over TLS (h2 by ALPN) to every server: usher's HTTPS
#                   listener, nginx's edge with `ssl http2` (not nginx static or the floor)
#   FLOOR=1         add the bare floor (benches/support/bare_floor.rs)
#   RAWFLOOR=1      add the bare floor without hyper (its `raw` mode) as "rawfloor"
#   PROF=NAME       `perf record -e cpu-clock` of that server in the first round, into
#                   $OUT/perf-NAME.data; PROFG sets the call-graph option (default -g;
#                   "--call-graph dwarf,16384" sees through inlined frames)
#   SCHED=1         count the servers' context switches by kind (sched:sched_switch)
#   SYSCALLS=1      count the servers' system calls by kind in the first round (perf stat
#                   on the syscalls tracepoints) and print them per request
#   WRKPREFIX=...   run wrk under this (e.g. "chrt -b 0": wrk's wakeups never preempt)
#   OUT=DIR         where profiles and the results go (default: a fresh temporary folder)
#
# Each line also gives the load generator's own CPU time a request ("client": wrk's or
# h2load's user + system time, from bash's `times` around it). Server and client share the
# two cores, so a server's requests/s is at most about 2 cores / (client + server µs a
# request): how far a cheaper server can move requests/s at all.
#
# Needs wrk, nginx, python3, curl (and perf for PROF, SCHED or SYSCALLS). Traffic goes to 127.0.0.1
# only; every load run is bounded by SECONDS.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
rounds=${2:-5}
connections=${3:-64}
[ -n "${VARIANTS:-}" ] || { echo "benches/ab.sh: set VARIANTS=\"name:/path/to/usher ...\"" >&2; exit 1; }
if [ "${TLS:-0}" = 1 ]; then
  H2=1
  if [ "${FLOOR:-0}" = 1 ] || [ "${RAWFLOOR:-0}" = 1 ] || [ "${STATIC:-0}" = 1 ]; then
    echo "benches/ab.sh: TLS=1 loads usher and nginx's edge only (no FLOOR or STATIC)" >&2; exit 1
  fi
fi
for tool in wrk python3 curl $([ "${H2:-0}" = 1 ] && echo h2load) $([ "${TLS:-0}" = 1 ] && echo openssl); do
  command -v "$tool" >/dev/null || { echo "benches/ab.sh: needs $tool" >&2; exit 1; }
done
if [ "${FLOOR:-0}" = 1 ] || [ "${RAWFLOOR:-0}" = 1 ]; then cargo build --release --quiet --example bare_floor; fi
out=${OUT:-$(mktemp -d)}
mkdir -p "$out"
# The work folder, ports, nginx_conf, the edge setup and wrk's script.
source benches/support/nginx_bench.sh

# --- content and signed links ------------------------------------------------------------------
bench=$work/root/demo/bench
object=${OBJECT:-small}
case $object in small | big) ;; *) echo "benches/ab.sh: OBJECT is small or big" >&2; exit 1 ;; esac
mkdir -p "$bench/$object"
secret=bench-secret-0123456789
python3 - "$bench" "$work" "$secret" "$object" <<'EOF'
import base64, hashlib, hmac, os, sys, time
bench, work, secret, kind = sys.argv[1:5]
if kind == "small":
    names = [f"part_{i:04}.bin" for i in range(1000)]
    for n in names:
        with open(os.path.join(bench, kind, n), "wb") as f:
            f.write(os.urandom(1024))
else:  # 1,000 distinct 188 KB files, as in vs_nginx.sh
    names = [f"seg_{i:04}.ts" for i in range(1000)]
    for n in names:
        with open(os.path.join(bench, kind, n), "wb") as f:
            f.write(os.urandom(188 * 1000))
lines = ["#EXTM3U", "#EXT-X-VERSION:3", "#EXT-X-TARGETDURATION:1", "#EXT-X-PLAYLIST-TYPE:VOD"]
for n in names:
    lines += ["#EXTINF:0.200,", n]
with open(os.path.join(bench, kind, "index.m3u8"), "w") as f:
    f.write("\n".join(lines + ["#EXT-X-ENDLIST", ""]))
expires = int(time.time()) + 3600
paths = [f"/demo/bench/{kind}/{n}" for n in names]
def edge(p):
    md5 = hashlib.md5(f"{expires}{p} {secret}".encode()).digest()
    return f"{p}?md5={base64.urlsafe_b64encode(md5).decode().rstrip('=')}&expires={expires}"
def floor(p):
    tag = hmac.new(b"bare-floor-secret", p.encode(), hashlib.sha256).digest()[:16]
    return f"{p}?token={base64.urlsafe_b64encode(tag).decode().rstrip('=')}"
open(f"{work}/edge.paths", "w").write("\n".join(map(edge, paths)) + "\n")
open(f"{work}/floor.paths", "w").write("\n".join(map(floor, paths)) + "\n")
open(f"{work}/static.paths", "w").write("\n".join(paths) + "\n")
EOF

# --- nginx: the origin, and the edge as vs_nginx.sh sets it up -----------------------------------
declare -A port pid plain
for p in origin edge floor rawfloor static; do port[$p]=$(free_port); done
nginx_conf origin "server { listen 127.0.0.1:${port[origin]}; root $work/root; }"
if [ "${STATIC:-0}" = 1 ]; then
  nginx_conf static "server { listen 127.0.0.1:${port[static]}; root $work/root; }"
  wait_for "http://127.0.0.1:${port[static]}/"
fi
scheme=http
edge_listen="listen 127.0.0.1:${port[edge]};"
if [ "${TLS:-0}" = 1 ]; then
  scheme=https
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
  edge_listen="listen 127.0.0.1:${port[edge]} ssl http2; ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem; ssl_session_cache shared:tls:10m;"
fi
nginx_conf edge "$(edge_upstream "${port[origin]}")
    server { $edge_listen $(edge_locations "$secret") }"
wait_for "http://127.0.0.1:${port[origin]}/"
wait_for "$scheme://127.0.0.1:${port[edge]}/"

# --- the servers under test ----------------------------------------------------------------------
names=()
for variant in $VARIANTS; do
  name=${variant%%:*}
  binary=${variant#*:}
  [ -x "$binary" ] || { echo "benches/ab.sh: $binary is not an executable" >&2; exit 1; }
  names+=("$name")
  port[$name]=$(free_port)
  plain[$name]=$(free_port)
  # session_ttl: the URL lists' session tokens outlive a run of any length (vs_nginx.sh).
  # With TLS=1 the port under load is an HTTPS listener beside the plain one.
  if [ "${TLS:-0}" = 1 ]; then
    listeners="http = \"127.0.0.1:${plain[$name]}\"\nhttps = \"127.0.0.1:${port[$name]}\"\ncert = \"$work/cert.pem\"\nkey = \"$work/key.pem\""
  else
    plain[$name]=${port[$name]}
    listeners="http = \"127.0.0.1:${port[$name]}\""
  fi
  sed -e "s|^origin = \"../demo\"|origin = \"http://127.0.0.1:${port[origin]}\"|" \
      -e "s|^http = \"127.0.0.1:8080\"|$listeners|" \
      -e "s|^session_ttl = .*|session_ttl = \"2h\"|" \
      config/usher.toml > "$work/$name.toml"
  RUST_LOG=warn "$binary" serve --config "$work/$name.toml" --admin-listen 127.0.0.1:0 \
    --data-dir "$work/data-$name" >"$work/$name.out" 2>"$work/$name.err" &
  pids+=($!)
  pid[$name]=$!
  for _ in $(seq 100); do grep -q '^play: ' "$work/$name.out" 2>/dev/null && break; sleep 0.1; done
  play=$(grep '^play: ' "$work/$name.out" | cut -d' ' -f2) || { cat "$work/$name.err" >&2; exit 1; }
  # Each object URI as the playlist (requested with the demo ticket) wrote it.
  curl -fsS "http://127.0.0.1:${plain[$name]}/demo/bench/$object/index.m3u8?ticket=${play##*ticket=}" \
    | grep -v '^#' | sed "s|^|/demo/bench/$object/|" > "$work/$name.paths"
done
if [ "${FLOOR:-0}" = 1 ]; then
  ./target/release/examples/bare_floor "127.0.0.1:${port[floor]}" "$(nproc)" "$bench/$object" >/dev/null &
  pids+=($!)
  pid[floor]=$!
  wait_for "http://127.0.0.1:${port[floor]}/"
  names+=(floor)
fi
if [ "${RAWFLOOR:-0}" = 1 ]; then
  cp "$work/floor.paths" "$work/rawfloor.paths"
  ./target/release/examples/bare_floor "127.0.0.1:${port[rawfloor]}" "$(nproc)" "$bench/$object" 0 raw >/dev/null &
  pids+=($!)
  pid[rawfloor]=$!
  wait_for "http://127.0.0.1:${port[rawfloor]}/"
  names+=(rawfloor)
fi
if [ "${EDGE:-1}" = 1 ]; then names+=(edge); fi
if [ "${STATIC:-0}" = 1 ]; then names+=(static); fi
# A warm-up pass fills every shield.
for name in "${names[@]}"; do
  case $name in floor | rawfloor | static) continue ;; esac
  sed "s|^|$scheme://127.0.0.1:${port[$name]}|" "$work/$name.paths" | xargs -n 100 -P 2 curl -kfsS >/dev/null
done

# --- measuring -----------------------------------------------------------------------------------
tck=$(getconf CLK_TCK)
server_pids() { # name -> its pids (nginx: master and workers, read each time)
  if [ "$1" = edge ] || [ "$1" = static ]; then
    local m; m=$(cat "$work/nginx-$1/master.pid"); echo "$m" $(pgrep -P "$m")
  else
    echo "${pid[$1]}"
  fi
}
ticks() { # field (14 user, 15 system) pids... -> their sum
  local field=$1 t=0 p v; shift
  for p in "$@"; do v=$(awk -v f="$field" '{print $f}' "/proc/$p/stat" 2>/dev/null) || continue; t=$((t + v)); done
  echo $t
}
children_ticks() { # file -> CPU ticks of this shell's finished children (user + system) it holds
  # The file is written by `times` in this shell itself: in a subshell ($(...)) it would
  # count the subshell's children.
  awk -v k="$tck" 'END { split($1, u, /[ms]/); split($2, s, /[ms]/);
    printf "%.0f", ((u[1] * 60 + u[2]) + (s[1] * 60 + s[2])) * k }' "$1"
}
syscall_events=$(for c in read recvfrom recvmsg write writev sendto sendmsg sendfile64 epoll_wait \
  epoll_ctl futex sched_yield setsockopt accept4 close shutdown mmap munmap madvise brk; do
  printf 'syscalls:sys_enter_%s,' "$c"; done)
syscall_events=${syscall_events%,}
echo "results in $out/results.txt"
: > "$out/results.txt"
for round in $(seq "$rounds"); do
  for name in "${names[@]}"; do
    read -r -a pp <<<"$(server_pids "$name")"
    user0=$(ticks 14 "${pp[@]}"); sys0=$(ticks 15 "${pp[@]}")
    watcher=
    if [ "${PROF:-}" = "$name" ] && [ "$round" = 1 ]; then
      # shellcheck disable=SC2086 # PROFG is options
      perf record -e cpu-clock ${PROFG:--g} -p "$(IFS=,; echo "${pp[*]}")" -o "$out/perf-$name.data" \
        -- sleep "$seconds" >/dev/null 2>&1 &
      watcher=$!
    elif [ -n "${SYSCALLS:-}" ] && [ "$round" = 1 ]; then
      perf stat -x, -e "$syscall_events" -p "$(IFS=,; echo "${pp[*]}")" -o "$out/syscalls-$name.csv" \
        -- sleep "$seconds" >/dev/null 2>&1 &
      watcher=$!
    elif [ -n "${SCHED:-}" ] && [ "$round" = 1 ]; then
      perf record -e sched:sched_switch -p "$(IFS=,; echo "${pp[*]}")" -o "$out/sched-$name.data" \
        -- sleep "$seconds" >/dev/null 2>&1 &
      watcher=$!
    fi
    times > "$work/times0"
    if [ "${H2:-0}" = 1 ]; then
      sed "s|^|$scheme://127.0.0.1:${port[$name]}|" "$work/$name.paths" > "$work/h2.uris"
      result=$(h2load -t2 -c16 -m8 -D "$seconds" -i "$work/h2.uris" 2>&1)
      requests=$(awk '/^requests:/ {print $4}' <<<"$result")
      rps=$(awk '/^finished in/ {print $4}' <<<"$result")
      errors=$(awk '/^status codes:/ {print $5 + $7 + $9}' <<<"$result")
    else
      # shellcheck disable=SC2086 # WRKPREFIX is a command and its options
      result=$(PATHS=$work/$name.paths ${WRKPREFIX:-} wrk -t2 -c"$connections" -d"${seconds}s" \
        -s "$work/paths.lua" "http://127.0.0.1:${port[$name]}")
      requests=$(awk '/requests in/ {print $1}' <<<"$result")
      rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$result")
      errors=$(awk '/Non-2xx/ {print $5}' <<<"$result")
    fi
    times > "$work/times1"
    client=$(( $(children_ticks "$work/times1") - $(children_ticks "$work/times0") ))
    if [ -n "$watcher" ]; then wait "$watcher" || true; fi
    user=$(( $(ticks 14 "${pp[@]}") - user0 )); sys=$(( $(ticks 15 "${pp[@]}") - sys0 ))
    [ "${errors:-0}" = 0 ] || { echo "$name: $errors failed requests" >&2; exit 1; }
    awk -v r="$round" -v n="$name" -v rps="$rps" -v q="$requests" -v u="$user" -v s="$sys" -v k="$tck" \
      -v c="$client" \
      'BEGIN {printf "round %d %-10s %9.0f req/s %9.0f req/CPU-s  user %5.2f µs/req  system %5.2f µs/req  client %6.2f µs/req\n",
        r, n, rps, q / ((u + s) / k), u / k / q * 1e6, s / k / q * 1e6, c / k / q * 1e6}' | tee -a "$out/results.txt"
    if [ -n "${SYSCALLS:-}" ] && [ "$round" = 1 ] && [ -f "$out/syscalls-$name.csv" ]; then
      echo "  $name system calls a request: $(awk -F, -v q="$requests" '$1 ~ /^[0-9]+$/ && $1 > 0 {
        sub(/syscalls:sys_enter_/, "", $3); printf "%s %.3f  ", $3, $1 / q}' "$out/syscalls-$name.csv")"
    fi
    if [ -n "${SCHED:-}" ] && [ "$round" = 1 ] && [ -f "$out/sched-$name.data" ]; then
      echo "  $name switches: $(perf script -i "$out/sched-$name.data" 2>/dev/null \
        | grep -o 'prev_state=[A-Z+]*' | sort | uniq -c | tr '\n' ' ') (R: preempted, S: went to sleep)"
    fi
  done
done

# --- medians -------------------------------------------------------------------------------------
echo
echo "medians of $rounds rounds, ${seconds} s each, $object objects, $([ "${H2:-0}" = 1 ] && echo "h2load -t2 -c16 -m8 over $([ "$scheme" = https ] && echo TLS || echo h2c)" || echo "wrk -t2 -c$connections"), $(date -u +%F), $(nproc) cores"
for name in "${names[@]}"; do
  grep " $name " "$out/results.txt" | awk -v n="$name" '
    {rps[NR] = $4; cpu[NR] = $6; user[NR] = $9; sys[NR] = $12; client[NR] = $15}
    function median(a, n,   i, j, t) {
      for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) {t = a[i]; a[i] = a[j]; a[j] = t}
      return (n % 2) ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
    }
    END {printf "%-10s %9.0f req/s %9.0f req/CPU-s  user %5.2f µs/req  system %5.2f µs/req  client %6.2f µs/req\n",
      n, median(rps, NR), median(cpu, NR), median(user, NR), median(sys, NR), median(client, NR)}'
done
