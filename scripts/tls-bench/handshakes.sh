#!/usr/bin/env bash
# Full TLS handshakes per second of server CPU: echoplex tls:// beside nginx
# ssl (one worker), both driven by `openssl s_time -new` (a new session for
# every connection), ECDSA P-256 and RSA-2048 certificates from openssl,
# server on CPU 0, s_time on CPU 1. Server CPU is read from /proc (utime +
# stime), so a shared machine shifts the wall-clock rate, not the figure.
# Usage: scripts/tls-bench/handshakes.sh [ECHOPLEX] [SECONDS]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
E=${1:-target/release/echoplex}; T=${2:-10}
W=$(mktemp -d /tmp/echoplex-tls-bench.XXXXXX); trap 'rm -rf "$W"' EXIT
mkdir -p "$W/nginx-tmp"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/ec.key" -out "$W/ec.pem" \
  -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/rsa.key" -out "$W/rsa.pem" \
  -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
chmod 600 "$W"/*.key
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
run() { # name pid port cert
  local name=$1 pid=$2 port=$3 cert=$4 brief before after out n cpu
  brief=$(openssl s_client -connect "127.0.0.1:$port" -brief </dev/null 2>&1 |
    grep -E "Protocol|Ciphersuite|Server Temp Key" | tr '\n' ' ')
  before=$(ticks "$pid")
  out=$(taskset -c 1 openssl s_time -new -connect "127.0.0.1:$port" -time "$T" 2>&1 | grep "connections in" | head -1)
  after=$(ticks "$pid")
  n=$(echo "$out" | awk '{print $1}')
  cpu=$(echo "scale=3; ($after-$before)/$hz" | bc)
  printf "%-9s %-4s %6s handshakes in %ss, server CPU %6ss: %6s handshakes/s of server CPU | %s\n" \
    "$name" "$cert" "$n" "$T" "$cpu" "$(echo "$n/$cpu" | bc)" "$brief"
}
for cert in ec rsa; do
  port=$(free_port)
  taskset -c 0 "$E" serve "tls://127.0.0.1:$port" --tls-cert "$W/$cert.pem" --tls-key "$W/$cert.key" \
    >/dev/null 2>"$W/echoplex-$cert.log" &
  epid=$!; sleep 1
  run echoplex "$epid" "$port" "$cert"
  kill "$epid"; wait "$epid" || true
  port=$(free_port)
  sed -e "s#WORK#$W#g; s/PORT/$port/; s/CERT/$cert/g" "$here/nginx.conf.in" > "$W/nginx.conf"
  taskset -c 0 nginx -c "$W/nginx.conf" -p "$W" &
  npid=$!; sleep 1
  run nginx "$(pgrep -P "$npid" | head -1)" "$port" "$cert"
  kill "$npid"; wait "$npid" || true
done
