#!/bin/bash
# The load generator's cost: requests per CPU-second of `echoplex bench http://` against
# `wrk`, one thread each, the same connections, on one nginx (1 worker, `return 200`),
# alternating, three rounds. CPU is the generator's user+system time (/usr/bin/time).
# Usage: generator.sh [CONNS] [SECS]
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${ECHOPLEX_BIN:-$HERE/../../target/release/echoplex}
C=${1:-50}
D=${2:-5}
T=$(mktemp -d)
NPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
cat > $T/nginx.conf <<NG
worker_processes 1;
daemon off;
pid $T/nginx.pid;
error_log $T/error.log;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NPORT;
    location / { return 200 "hello from nginx\n"; }
  }
}
NG
nginx -c $T/nginx.conf -p $T -e $T/error.log &
ng=$!
trap 'kill -QUIT $ng 2>/dev/null; wait $ng 2>/dev/null; rm -rf $T' EXIT
sleep 1
url=http://127.0.0.1:$NPORT/
cpu() { awk '{print $1+$2}' "$1"; }
for round in 1 2 3; do
  /usr/bin/time -f "%U %S" -o $T/wrk.time wrk -t1 -c$C -d${D}s $url > $T/wrk.out
  reqs=$(awk '/requests in/{print $1}' $T/wrk.out)
  python3 -c "print(f'wrk   round $round: {$reqs} requests, {$(cpu $T/wrk.time):.2f} CPU-s, {$reqs/$(cpu $T/wrk.time):.0f} requests per CPU-second')"
  /usr/bin/time -f "%U %S" -o $T/bench.time $BIN bench $url -c $C --threads 1 -d $D --json > $T/bench.json
  reqs=$(python3 -c "import json;print(json.load(open('$T/bench.json'))['messages'])")
  python3 -c "print(f'bench round $round: {$reqs} requests, {$(cpu $T/bench.time):.2f} CPU-s, {$reqs/$(cpu $T/bench.time):.0f} requests per CPU-second')"
done
