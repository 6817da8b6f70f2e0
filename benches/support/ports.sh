# Sourced by the bench scripts: `free_port` prints a loopback port nothing listens on.
#
# The ports come from below the kernel's ephemeral range (ip_local_port_range). A script
# takes its ports first and starts its servers later; a port from inside that range (what
# binding port 0 gives) can meanwhile become the local end of one of the thousands of
# connections a warm-up or an edge-to-origin pool opens, and the server that was to listen
# on it fails with "address in use". Ports handed out once are not handed out again within
# one script: they are kept in $PORTS_TAKEN, a file in the script's work folder, which the
# script sets before sourcing this.
: "${PORTS_TAKEN:?set PORTS_TAKEN to a file in the work folder before sourcing ports.sh}"
touch "$PORTS_TAKEN"
free_port() {
  python3 - "$PORTS_TAKEN" <<'PY'
import random, socket, sys
taken_file = sys.argv[1]
with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
    low = int(f.read().split()[0])
with open(taken_file) as f:
    taken = {int(p) for p in f.read().split()}
lowest = 10000 if low > 12000 else 1024
for _ in range(1000):
    port = random.randrange(lowest, low)
    if port in taken:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    with open(taken_file, "a") as f:
        f.write(f"{port}\n")
    print(port)
    break
else:
    sys.exit("free_port: no free port below the ephemeral range")
PY
}
