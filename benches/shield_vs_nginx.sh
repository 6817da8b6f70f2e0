#!/usr/bin/env bash
# Cached segment requests: usher (ticket, rights and session checks on, the segment from
# its shield cache) against nginx serving the same file from disk with `secure_link`, side
# by side in one run, on this machine:
#
#   benches/shield_vs_nginx.sh [SECONDS] [CONNECTIONS] [WORKERS]
#
# Both get the same CPUs: nginx runs WORKERS worker processes (default: the number of
# cores), usher its default runtime (one thread per core). Needs wrk and nginx (Debian
# packages `wrk`, `nginx-light`). Traffic goes to 127.0.0.1 only; each wrk run is bounded by
# SECONDS. Prints requests/s for each, alternating over two rounds, and the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-10}
connections=${2:-32}
workers=${3:-$(nproc)}
command -v wrk >/dev/null || { echo "needs wrk (apt-get install wrk)" >&2; exit 1; }
nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "needs nginx (apt-get install nginx-light)" >&2; exit 1; }

cargo build --release --quiet
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# usher: the shipped config, rights from the embedded store (the demo subject owns the demo
# product), the demo directory as the origin.
sed -e "s|^origin = \"../demo\"|origin = \"$PWD/demo\"|" config/usher.toml > "$work/usher.toml"
RUST_LOG=warn ./target/release/usher serve --config "$work/usher.toml" \
  --listen 127.0.0.1:0 --admin-listen 127.0.0.1:0 --data-dir "$work/data" >"$work/usher.out" 2>"$work/usher.err" &
pids+=($!)
for _ in $(seq 100); do grep -q '^play: ' "$work/usher.out" 2>/dev/null && break; sleep 0.1; done
play=$(grep '^play: ' "$work/usher.out" | cut -d' ' -f2)
base=${play%%\?*}
variant=$(curl -fsS "$play" | grep -m1 '^360p/')
media="${base%/*}/$variant"
segment=$(curl -fsS "$media" | grep -m1 '^seg_')
usher_url="${media%%/index.m3u8*}/$segment"
curl -fsS -o /dev/null "$usher_url"   # the first request fills the cache
cached=$(curl -fsS -o /dev/null -w '%header{x-usher-cache}' "$usher_url")
[ "$cached" = hit ] || { echo "the segment is not served from the cache ($cached)" >&2; exit 1; }

# nginx: the same file, behind secure_link with an MD5 link, as an operator would set it up.
secret=bench-secret-0123456789
port=$(free_port)
mkdir -p "$work/nginx"
cat > "$work/nginx/nginx.conf" <<EOF
daemon off;
worker_processes $workers;
pid $work/nginx/nginx.pid;
error_log $work/nginx/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path $work/nginx/body;
    proxy_temp_path $work/nginx/proxy;
    server {
        listen 127.0.0.1:$port;
        location / {
            root $PWD/demo;
            secure_link \$arg_md5,\$arg_expires;
            secure_link_md5 "\$secure_link_expires\$uri $secret";
            if (\$secure_link = "") { return 403; }
            if (\$secure_link = "0") { return 410; }
        }
    }
}
EOF
"$nginx" -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
path="/demo/360p/${segment%%\?*}"
expires=$(( $(date +%s) + 3600 ))
md5=$(printf '%s' "$expires$path $secret" | openssl md5 -binary | openssl base64 | tr '+/' '-_' | tr -d '=')
nginx_url="http://127.0.0.1:$port$path?md5=$md5&expires=$expires"
curl -fsS -o /dev/null "$nginx_url"
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port$path?md5=x&expires=$expires")" = 403 ]
bytes=$(curl -fsS "$nginx_url" | wc -c)
[ "$(curl -fsS "$usher_url" | wc -c)" = "$bytes" ] || { echo "the two serve different bytes" >&2; exit 1; }

rate() { wrk -t2 -c"$connections" -d"${seconds}s" "$1" | awk '/^Requests\/sec/ {print $2}'; }
declare -A total=([usher]=0 [nginx]=0)
for round in 1 2; do
  for who in usher nginx; do
    url=$usher_url; [ "$who" = nginx ] && url=$nginx_url
    r=$(rate "$url")
    echo "round $round $who: $r req/s"
    total[$who]=$(awk -v a="${total[$who]}" -v b="$r" 'BEGIN {print a + b}')
  done
done
awk -v u="${total[usher]}" -v n="${total[nginx]}" -v b="$bytes" \
  'BEGIN {printf "segment of %d bytes: usher %.0f req/s, nginx secure_link %.0f req/s, usher/nginx %.2f\n", b, u/2, n/2, u/n}'
