#!/bin/bash
# Server CPU per request under wrk -t1 -c100 keep-alive: echoplex http:// (1 reactor) vs nginx
# (1 worker, return 200 with a body the size of echoplex's JSON). Servers on CPU 0, wrk on CPU 1.
set -e
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${ECHOPLEX_BIN:-$HERE/../../target/release/echoplex}
T=$(mktemp -d)
D=${1:-5}
taskset -c 0 $BIN serve http://127.0.0.1:0 > $T/ep.out 2>/dev/null &
ep=$!
for i in $(seq 1 100); do grep -q ready $T/ep.out && break; sleep 0.1; done
eport=$(grep -o 'http://[0-9.:]*' $T/ep.out | head -1); eport=${eport##*:}
NPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
# the JSON echoplex gives wrk's request (Host: 127.0.0.1:PORT), with nginx's port length
LEN=$(python3 - $eport <<'PY'
import socket,sys
p=int(sys.argv[1]); s=socket.create_connection(("127.0.0.1",p))
s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n"%p); d=b""
while b"}\n" not in d: d+=s.recv(4096)
print(len(d.split(b"\r\n\r\n",1)[1]))
PY
)
BODY=$(python3 -c "print('x'*($LEN-1))")
cat > $T/nginx.conf <<NG
worker_processes 1;
daemon off;
pid $T/nginx.pid;
error_log $T/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$NPORT;
    location / { default_type application/json; return 200 "$BODY\n"; }
  }
}
NG
taskset -c 0 nginx -c $T/nginx.conf -p $T -e $T/error.log &
ng=$!
sleep 1
ngw=$(pgrep -P $ng | head -1)
ticks() { awk '{print $14+$15}' /proc/$1/stat; }
echo "body $LEN B; echoplex pid $ep port $eport; nginx master $ng worker $ngw port $NPORT"
for round in 1 2 3; do
  for who in echoplex nginx; do
    if [ $who = echoplex ]; then pid=$ep; port=$eport; else pid=$ngw; port=$NPORT; fi
    a=$(ticks $pid)
    reqs=$(taskset -c 1 wrk -t1 -c100 -d${D}s http://127.0.0.1:$port/ | awk '/requests in/{print $1}')
    b=$(ticks $pid)
    python3 -c "print(f'$who round $round: {$reqs} requests, {($b-$a)} ticks, {($b-$a)*10000/$reqs:.2f} us/request, {$reqs/$D:.0f} req/s')"
  done
done
kill -TERM $ep; kill -QUIT $ng; wait $ep; wait $ng || true
