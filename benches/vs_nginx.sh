#!/usr/bin/env bash
# The contract benchmark (issue 12): usher against nginx, same content, same machine, one run.
#
#   benches/vs_nginx.sh [SECONDS] [ROUNDS] [CONNECTIONS]     (defaults 8, 3, 64)
#
# Servers, all in front of (or being) the same files:
#   nginx static   nginx serving the files from disk (sendfile, open_file_cache, keep-alive)
#   nginx edge     nginx as an operator sets up the peer: secure_link (MD5, per URI) and
#                  proxy_cache in front of an nginx origin; playlists get one token appended to
#                  each segment line with sub_filter; HTTP/1.1, h2c and h2 over TLS
#   usher          the shipped config with the same nginx origin as its upstream: session
#                  token, rights from the embedded store, session touch, shield hit; a
#                  second usher with listen.threads = 0 (the shared work-stealing runtime
#                  instead of one runtime per core) runs the 1 KiB and 188 KB cases too
#   bare floor     benches/support/bare_floor.rs, for the 1 KiB case: hyper on the same
#                  threads and sockets as usher, a truncated HMAC-SHA256 of the path checked,
#                  the object from a map in memory, nothing else; what usher's own work per
#                  request costs is the distance between the two; a second one spins
#                  FLOOR_WORK_NS (default 3500, about what usher's handling of a 1 KiB hit
#                  takes in a profile here) per request, to show what that much handling
#                  costs the whole server
# Cases: 1,000 distinct 1 KiB objects (.bin), 1,000 distinct 188 KB segments (.ts), a
# 10,000-segment VOD playlist (usher: query carrier, its variable form, and path carrier), and
# the 188 KB segments
# over HTTP/2 (h2load, h2c and TLS).
#
# Rounds are interleaved (each round runs every case on every server); the figures are the
# medians over the rounds: requests/s, p99 latency, requests per server CPU-second (the
# serving processes' user+system time from /proc, nginx master and workers; the nginx origin
# behind the edge and usher is not counted, it only sees misses), then the ratios, and the
# main ratios once more round by round (the spread between rounds shows there). usher's
# peak RSS is checked against the shield budget + 64 MiB.
#
# Needs wrk, h2load, nginx, openssl, python3 (Debian: wrk nghttp2-client nginx-light openssl
# python3). Traffic goes to 127.0.0.1 only; every load run is bounded by SECONDS. wrk and
# h2load share the cores with the servers, as in every figure in the README.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-8}
rounds=${2:-3}
connections=${3:-64}
for tool in wrk h2load openssl python3; do
  command -v "$tool" >/dev/null || { echo "benches/vs_nginx.sh: needs $tool" >&2; exit 1; }
done
cargo build --release --quiet --bin usher --example bare_floor
# The work folder, ports, nginx_conf, the edge setup and wrk's script.
source benches/support/nginx_bench.sh

# --- content: under /demo/ so the demo viewer's purchase covers it --------------------------
root=$work/root
bench=$root/demo/bench
mkdir -p "$bench/small" "$bench/big" "$bench/long" "$bench/plong" "$bench/vlong"
python3 - "$bench" <<'EOF'
import os, sys
bench = sys.argv[1]
def playlist(names, duration):
    lines = ["#EXTM3U", "#EXT-X-VERSION:3", f"#EXT-X-TARGETDURATION:{max(1, round(duration))}",
             "#EXT-X-PLAYLIST-TYPE:VOD"]
    for n in names:
        lines += [f"#EXTINF:{duration:.3f},", n]
    return "\n".join(lines + ["#EXT-X-ENDLIST", ""])
small = [f"part_{i:04}.bin" for i in range(1000)]
for n in small:
    with open(os.path.join(bench, "small", n), "wb") as f:
        f.write(os.urandom(1024))
# 1,000 distinct files: one file under 1,000 names would let nginx static send the same
# 47 pages every time, hot in the CPU's caches, while usher's shield keeps 1,000 bodies.
big = [f"seg_{i:04}.ts" for i in range(1000)]
for n in big:
    with open(os.path.join(bench, "big", n), "wb") as f:
        f.write(os.urandom(188 * 1000))
for d, names, dur in (("small", small, 0.2), ("big", big, 4.0)):
    with open(os.path.join(bench, d, "index.m3u8"), "w") as f:
        f.write(playlist(names, dur))
long = playlist([f"seg_{i:05}.ts" for i in range(10000)], 6.0)
for d in ("long", "plong", "vlong"):
    with open(os.path.join(bench, d, "index.m3u8"), "w") as f:
        f.write(long)
EOF
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 1 -subj /CN=localhost \
  -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

# --- nginx: the origin, the static server, the edge -----------------------------------------
secret=bench-secret-0123456789
declare -A port
for p in origin static edge edge_h2c edge_tls usher usher_tls usher0 floor floor_work; do port[$p]=$(free_port); done
nginx_conf origin "server { listen 127.0.0.1:${port[origin]}; root $root; }"
nginx_conf static "server { listen 127.0.0.1:${port[static]}; root $root; }"
locations=$(edge_locations "$secret")
nginx_conf edge "$(edge_upstream "${port[origin]}")
    http2_max_concurrent_streams 128;
    server { listen 127.0.0.1:${port[edge]}; $locations }
    server { listen 127.0.0.1:${port[edge_h2c]} http2; $locations }
    server {
        listen 127.0.0.1:${port[edge_tls]} ssl http2;
        ssl_certificate $work/cert.pem;
        ssl_certificate_key $work/key.pem;
        ssl_session_cache shared:tls:10m;
        $locations
    }"
for p in origin static edge; do wait_for "http://127.0.0.1:${port[$p]}/"; done

# --- usher: the shipped config, the nginx origin upstream, HTTPS beside HTTP -----------------
# The URL lists are taken once, so their session tokens must outlive the run: a session
# token past `session_ttl` (10 min) works only while its session had a request within
# `sessions.idle_timeout`, and the 188 KB lists sit idle for longer than that between rounds.
sed -e "s|^origin = \"../demo\"|origin = \"http://127.0.0.1:${port[origin]}\"|" \
    -e "s|^session_ttl = .*|session_ttl = \"2h\"|" \
    -e "s|^http = \"127.0.0.1:8080\"|http = \"127.0.0.1:${port[usher]}\"\nhttps = \"127.0.0.1:${port[usher_tls]}\"\ncert = \"$work/cert.pem\"\nkey = \"$work/key.pem\"|" \
    config/usher.toml > "$work/usher.toml"
cat >> "$work/usher.toml" <<'EOF'

[[routes]]
prefix = "/demo/bench/plong/"
carrier = "path"

[[routes]]
prefix = "/demo/bench/vlong/"
carrier = "variable"
EOF
# A second usher, HTTP only, with the shared work-stealing runtime (`listen.threads = 0`)
# instead of one runtime per core: the two ways of serving side by side.
sed -e "s|^\[listen\]|[listen]\nthreads = 0|" -e "s|:${port[usher]}\"|:${port[usher0]}\"|" \
    -e "/^https = /d" -e "/^cert = /d" -e "/^key = /d" "$work/usher.toml" > "$work/usher0.toml"
start_usher() { # name -> starts it, sets ${name}_pid and ${name}_ticket
  RUST_LOG=warn ./target/release/usher serve --config "$work/$1.toml" \
    --admin-listen 127.0.0.1:0 --data-dir "$work/data-$1" >"$work/$1.out" 2>"$work/$1.err" &
  pids+=($!)
  printf -v "$1_pid" %s $!
  for _ in $(seq 100); do grep -q '^play: ' "$work/$1.out" 2>/dev/null && break; sleep 0.1; done
  local play
  play=$(grep '^play: ' "$work/$1.out" | cut -d' ' -f2) || { cat "$work/$1.err" >&2; exit 1; }
  printf -v "$1_ticket" %s "${play##*ticket=}"
}
start_usher usher
start_usher usher0
ticket=$usher_ticket
u=http://127.0.0.1:${port[usher]}
ut=https://127.0.0.1:${port[usher_tls]}
u0=http://127.0.0.1:${port[usher0]}
./target/release/examples/bare_floor "127.0.0.1:${port[floor]}" "$(nproc)" "$bench/small" >"$work/floor.out" &
pids+=($!)
floor_pid=$!
f=http://127.0.0.1:${port[floor]}
work_ns=${FLOOR_WORK_NS:-3500}
./target/release/examples/bare_floor "127.0.0.1:${port[floor_work]}" "$(nproc)" "$bench/small" "$work_ns" \
  >"$work/floor_work.out" &
pids+=($!)
floor_work_pid=$!
fw=http://127.0.0.1:${port[floor_work]}
wait_for "$f/"
wait_for "$fw/"

# --- the URL lists ----------------------------------------------------------------------------
# usher: each object URI as its playlist (requested with the ticket) wrote it.
for kind in small big; do
  curl -fsS "$u/demo/bench/$kind/index.m3u8?ticket=$ticket" | grep -v '^#' \
    | sed "s|^|/demo/bench/$kind/|" > "$work/usher-$kind.paths"
  curl -fsS "$u0/demo/bench/$kind/index.m3u8?ticket=$usher0_ticket" | grep -v '^#' \
    | sed "s|^|/demo/bench/$kind/|" > "$work/usher0-$kind.paths"
done
token=$(head -1 "$work/usher-small.paths" | sed 's/.*token=//')
echo "/demo/bench/long/index.m3u8?token=$token" > "$work/usher-playlist-query.paths"
plong=$(curl -fsS "$u/demo/bench/plong/index.m3u8?ticket=$ticket")
ptoken=$(grep -m1 -v '^#' <<<"$plong" | cut -d/ -f2)
echo "/$ptoken/demo/bench/plong/index.m3u8" > "$work/usher-playlist-path.paths"
echo "/demo/bench/vlong/index.m3u8?token=$token" > "$work/usher-playlist-variable.paths"
# nginx: a secure_link per URI, as the operator's billing would sign it.
python3 - "$work" "$secret" <<'EOF'
import base64, hashlib, hmac, sys, time
work, secret = sys.argv[1], sys.argv[2]
expires = int(time.time()) + 3600
def link(path):
    md5 = hashlib.md5(f"{expires}{path} {secret}".encode()).digest()
    return f"{path}?md5={base64.urlsafe_b64encode(md5).decode().rstrip('=')}&expires={expires}"
for kind, names in (("small", [f"part_{i:04}.bin" for i in range(1000)]),
                    ("big", [f"seg_{i:04}.ts" for i in range(1000)])):
    paths = [f"/demo/bench/{kind}/{n}" for n in names]
    open(f"{work}/static-{kind}.paths", "w").write("\n".join(paths) + "\n")
    open(f"{work}/edge-{kind}.paths", "w").write("\n".join(map(link, paths)) + "\n")
open(f"{work}/edge-playlist.paths", "w").write(link("/demo/bench/long/index.m3u8") + "\n")
# The bare floor's links: base64url of the first 16 bytes of HMAC-SHA256 over the path.
def floor_link(path):
    tag = hmac.new(b"bare-floor-secret", path.encode(), hashlib.sha256).digest()[:16]
    return f"{path}?token={base64.urlsafe_b64encode(tag).decode().rstrip('=')}"
small = [f"/demo/bench/small/part_{i:04}.bin" for i in range(1000)]
open(f"{work}/floor-small.paths", "w").write("\n".join(map(floor_link, small)) + "\n")
EOF

# Each server answers each list with the same bytes (checked on the first object), nginx's
# edge refuses a bad link, and a warm-up pass fills both shields.
for kind in small big; do
  a=$(curl -fsS "$u$(head -1 "$work/usher-$kind.paths")" | sha256sum)
  b=$(curl -fsS "http://127.0.0.1:${port[edge]}$(head -1 "$work/edge-$kind.paths")" | sha256sum)
  c=$(curl -fsS "http://127.0.0.1:${port[static]}$(head -1 "$work/static-$kind.paths")" | sha256sum)
  [ "$a" = "$b" ] && [ "$b" = "$c" ] || { echo "the servers answer $kind with different bytes" >&2; exit 1; }
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:${port[edge]}/demo/bench/small/part_0000.bin?md5=x&expires=9999999999")" = 403 ]
[ "$(curl -s -o /dev/null -w '%{http_code}' "$u/demo/bench/small/part_0000.bin")" = 401 ]
[ "$(curl -fsS "$f$(head -1 "$work/floor-small.paths")" | sha256sum)" = \
  "$(curl -fsS "$u$(head -1 "$work/usher-small.paths")" | sha256sum)" ]
[ "$(curl -s -o /dev/null -w '%{http_code}' "$f/demo/bench/small/part_0000.bin?token=AAAAAAAAAAAAAAAAAAAAAA")" = 403 ]
for kind in small big; do
  sed "s|^|$u|" "$work/usher-$kind.paths" | xargs -n 100 -P 2 curl -fsS >/dev/null
  sed "s|^|$u0|" "$work/usher0-$kind.paths" | xargs -n 100 -P 2 curl -fsS >/dev/null
  sed "s|^|http://127.0.0.1:${port[edge]}|" "$work/edge-$kind.paths" | xargs -n 100 -P 2 curl -fsS >/dev/null
done
hit=$(curl -fsS -o /dev/null -w '%header{x-usher-cache}' "$u$(tail -1 "$work/usher-big.paths")")
[ "$hit" = hit ] || { echo "usher does not serve the segments from its shield ($hit)" >&2; exit 1; }
size() { curl -fsS "$1" | wc -c; }
bytes_in=$(wc -c < "$bench/long/index.m3u8")
bytes_query=$(size "$u$(cat "$work/usher-playlist-query.paths")")
bytes_path=$(size "$u$(cat "$work/usher-playlist-path.paths")")
bytes_variable=$(size "$u$(cat "$work/usher-playlist-variable.paths")")
bytes_sub=$(size "http://127.0.0.1:${port[edge]}$(cat "$work/edge-playlist.paths")")

# --- measuring ---------------------------------------------------------------------------------
tck=$(getconf CLK_TCK)
server_pids() { # server -> its pids (nginx: master and workers)
  case $1 in
    usher) echo "$usher_pid" ;;
    usher0) echo "$usher0_pid" ;;
    floor) echo "$floor_pid" ;;
    floor_work) echo "$floor_work_pid" ;;
    *) local m; m=$(cat "$work/nginx-$1/master.pid"); echo "$m" $(pgrep -P "$m") ;;
  esac
}
cpu_ticks() { local t=0 p; for p in $(server_pids "$1"); do
  t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat"))); done; echo $t; }

# one load run -> "rps p99_ms req_per_cpu_s" appended to $work/results/CASE.SERVER
run() { # case server transport base paths-file
  local case=$1 server=$2 transport=$3 base=$4 paths=$5 before after out requests rps p99 errors
  before=$(cpu_ticks "$server")
  if [ "$transport" = h1 ]; then
    out=$(PATHS=$paths wrk -t2 -c"$connections" -d"${seconds}s" --latency -s "$work/paths.lua" "$base")
    after=$(cpu_ticks "$server")
    requests=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
    p99=$(awk '$1 == "99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
    errors=$(awk '/Non-2xx/ {print $5}' <<<"$out")
  else
    sed "s|^|$base|" "$paths" > "$work/h2.uris"
    rm -f "$work/h2.log"
    out=$(h2load -t2 -c16 -m8 -D "$seconds" --log-file="$work/h2.log" -i "$work/h2.uris" 2>&1)
    after=$(cpu_ticks "$server")
    requests=$(awk '/^requests:/ {print $4}' <<<"$out")
    rps=$(awk '/^finished in/ {print $4}' <<<"$out")
    p99=$(cut -f3 "$work/h2.log" | sort -n | awk '{v[NR]=$1} END {print v[int(NR*0.99)]/1000}')
    errors=$(awk '/^status codes:/ {print $5 + $7 + $9}' <<<"$out")
  fi
  [ "${errors:-0}" = 0 ] || { echo "$case $server: $errors failed requests" >&2; echo "$out" >&2; exit 1; }
  echo "$rps $p99 $(awk -v r="$requests" -v t=$((after - before)) -v k="$tck" 'BEGIN {printf "%.0f", r / (t / k)}')" \
    >> "$work/results/$case.$server"
  printf '  %-9s %-7s %10.0f req/s  p99 %7.2f ms  %8.0f req/CPU-s\n' "$case" "$server" $(tail -1 "$work/results/$case.$server")
}
mkdir -p "$work/results"
e=http://127.0.0.1:${port[edge]}
s=http://127.0.0.1:${port[static]}
for round in $(seq "$rounds"); do
  echo "round $round"
  run 1k static h1 "$s" "$work/static-small.paths"
  run 1k edge h1 "$e" "$work/edge-small.paths"
  run 1k usher h1 "$u" "$work/usher-small.paths"
  run 1k usher0 h1 "$u0" "$work/usher0-small.paths"
  run 1k floor h1 "$f" "$work/floor-small.paths"
  run 1k floor_work h1 "$fw" "$work/floor-small.paths"
  run 188k static h1 "$s" "$work/static-big.paths"
  run 188k edge h1 "$e" "$work/edge-big.paths"
  run 188k usher h1 "$u" "$work/usher-big.paths"
  run 188k usher0 h1 "$u0" "$work/usher0-big.paths"
  run playlist edge h1 "$e" "$work/edge-playlist.paths"
  run pl-query usher h1 "$u" "$work/usher-playlist-query.paths"
  run pl-path usher h1 "$u" "$work/usher-playlist-path.paths"
  run pl-var usher h1 "$u" "$work/usher-playlist-variable.paths"
  run h2c-188k edge h2 "http://127.0.0.1:${port[edge_h2c]}" "$work/edge-big.paths"
  run h2c-188k usher h2 "$u" "$work/usher-big.paths"
  run tls-188k edge h2 "https://127.0.0.1:${port[edge_tls]}" "$work/edge-big.paths"
  run tls-188k usher h2 "$ut" "$work/usher-big.paths"
done

# --- the medians and the ratios --------------------------------------------------------------
median() { # file column
  awk -v c="$2" '{print $c}' "$1" | sort -g | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2] + v[NR/2+1]) / 2}'
}
declare -A m
for f in "$work"/results/*; do
  k=${f##*/}
  m[$k.rps]=$(median "$f" 1); m[$k.p99]=$(median "$f" 2); m[$k.cpu]=$(median "$f" 3)
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f×", a / b}'; }
row() { # label case server [ratio-against-case.server ...]
  local label=$1 k=$2.$3 r="" against; shift 3
  for against in "$@"; do r+=" $(ratio "${m[$k.rps]}" "${m[$against.rps]}") (CPU-s $(ratio "${m[$k.cpu]}" "${m[$against.cpu]}")) |"; done
  printf '| %s | %.0f | %.2f ms | %.0f |%s\n' "$label" "${m[$k.rps]}" "${m[$k.p99]}" "${m[$k.cpu]}" "${r:- |}"
}
echo
echo "medians of $rounds rounds, ${seconds} s each, wrk -t2 -c$connections / h2load -t2 -c16 -m8, $(date -u +%F), $(nproc) cores"
echo
echo "| case | req/s | p99 | req per server CPU-s | against nginx edge (secure_link + proxy_cache) | against nginx static |"
echo "| --- | --- | --- | --- | --- | --- |"
row "1 KiB, nginx static" 1k static
row "1 KiB, nginx edge" 1k edge
row "1 KiB, usher" 1k usher 1k.edge 1k.static
row "1 KiB, usher with listen.threads = 0" 1k usher0 1k.edge 1k.static
row "1 KiB, bare floor (hyper, HMAC, a map; no usher)" 1k floor 1k.edge 1k.static
row "1 KiB, bare floor + $((work_ns / 1000)).$((work_ns % 1000 / 100)) µs of work a request" 1k floor_work 1k.edge 1k.static
row "188 KB, nginx static" 188k static
row "188 KB, nginx edge" 188k edge
row "188 KB, usher" 188k usher 188k.edge 188k.static
row "188 KB, usher with listen.threads = 0" 188k usher0 188k.edge 188k.static
row "10k playlist, nginx sub_filter ($bytes_sub B out)" playlist edge
row "10k playlist, usher query carrier ($bytes_query B out)" pl-query usher playlist.edge
row "10k playlist, usher path carrier ($bytes_path B out)" pl-path usher playlist.edge
row "10k playlist, usher variable carrier ($bytes_variable B out)" pl-var usher playlist.edge
row "188 KB h2c, nginx edge" h2c-188k edge
row "188 KB h2c, usher" h2c-188k usher h2c-188k.edge
row "188 KB h2 TLS, nginx edge" tls-188k edge
row "188 KB h2 TLS, usher" tls-188k usher tls-188k.edge
echo
# The same ratios round by round: servers in one round ran minutes apart at most, so a
# round's ratio is spared the drift between rounds that the medians above mix in.
per_round() { # label case.server against.case.server
  paste -d' ' "$work/results/$2" "$work/results/$3" | awk -v l="$1" '
    {r = r sprintf(" %.2f×", $1 / $4); c = c sprintf(" %.2f×", $3 / $6)}
    END {printf "  %-24s req/s%s; per CPU-s%s\n", l, r, c}'
}
echo "ratios round by round:"
per_round "1 KiB usher / edge" 1k.usher 1k.edge
per_round "1 KiB usher / static" 1k.usher 1k.static
per_round "188 KB usher / edge" 188k.usher 188k.edge
per_round "188 KB usher / static" 188k.usher 188k.static
per_round "h2 TLS usher / edge" tls-188k.usher tls-188k.edge
echo
awk -v i="$bytes_in" -v q="$bytes_query" -v v="$bytes_variable" -v p="$bytes_path" \
  'BEGIN {printf "playlist: %d B from the origin; usher query carrier %.2f× the input (written with a variable %.2f×), path carrier %.2f×\n", i, q / i, v / i, p / i}'
budget=$(awk -F' *= *' '/^memory = / {print $2}' "$work/usher.toml")
hwm=$(awk '/^VmHWM/ {print $2 * 1024}' "/proc/$usher_pid/status")
awk -v h="$hwm" -v b="$budget" 'BEGIN {printf "usher peak RSS %.0f MiB; shield budget %.0f MiB + 64 MiB = %.0f MiB: %s\n",
  h / 1048576, b / 1048576, b / 1048576 + 64, (h <= b + 67108864) ? "within" : "OVER"}'
