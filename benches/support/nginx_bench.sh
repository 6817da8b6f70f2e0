# Sourced by benches/vs_nginx.sh and benches/ab.sh: the work folder and its cleanup, ports,
# nginx as the origin and as the peer edge, and wrk's URL-list script. Expects to run from
# the repository's root with `set -euo pipefail`; sets `work`, `pids` and `nginx`.

nginx=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$nginx" ] || { echo "${0}: needs nginx (apt-get install nginx-light)" >&2; exit 1; }
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

PORTS_TAKEN=$work/ports.taken
source benches/support/ports.sh
wait_for() { for _ in $(seq 100); do curl -sk -o /dev/null "$1" && return 0; sleep 0.1; done; echo "no answer from $1" >&2; exit 1; }

nginx_conf() { # name, server blocks -> starts an nginx with them; its master's pid in $work/nginx-NAME/master.pid
  local dir=$work/nginx-$1
  mkdir -p "$dir/cache"
  cat > "$dir/nginx.conf" <<EOF
daemon off;
$([ "$(id -u)" = 0 ] && echo "user root;") # the work dir is private to whoever runs this
worker_processes $(nproc);
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 4096; }
http {
    include /etc/nginx/mime.types;
    access_log off;
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    open_file_cache max=4096 inactive=60s;
    open_file_cache_valid 60s;
    client_body_temp_path $dir/body;
    proxy_temp_path $dir/proxy;
    fastcgi_temp_path $dir/fastcgi;
    uwsgi_temp_path $dir/uwsgi;
    scgi_temp_path $dir/scgi;
$2
}
EOF
  "$nginx" -c "$dir/nginx.conf" -p "$dir" &
  pids+=($!)
  echo $! > "$dir/master.pid"
}

edge_locations() { # secret -> the edge's server body, as an operator sets up the peer:
  # secure_link (MD5 of "$secure_link_expires$uri secret") and proxy_cache in front of the
  # upstream `origin`; playlists are cached 5 s and sub_filter appends the request's link
  # to each segment line
  local proxy="
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header Accept-Encoding \"\";
            proxy_cache shield;
            proxy_cache_key \$uri;
            proxy_cache_lock on;"
  echo "
        secure_link \$arg_md5,\$arg_expires;
        secure_link_md5 \"\$secure_link_expires\$uri $1\";
        if (\$secure_link = \"\") { return 403; }
        if (\$secure_link = \"0\") { return 410; }
        location / {
            $proxy
            proxy_cache_valid 200 10m;
        }
        location ~ \\.m3u8\$ {
            $proxy
            proxy_cache_valid 200 5s;
            sub_filter_types application/vnd.apple.mpegurl;
            sub_filter_once off;
            sub_filter '.ts' '.ts?md5=\$arg_md5&expires=\$arg_expires';
        }"
}

edge_upstream() { # origin port -> the edge's upstream and cache zone
  echo "
    upstream origin { server 127.0.0.1:$1; keepalive 64; }
    proxy_cache_path $work/nginx-edge/cache levels=1:2 keys_zone=shield:16m max_size=512m inactive=1h;"
}

# wrk's script: the requests cycle through the paths in the file $PATHS names.
cat > "$work/paths.lua" <<'EOF'
local paths = {}
for line in io.lines(os.getenv("PATHS")) do paths[#paths + 1] = line end
local i = 0
request = function()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end
EOF
