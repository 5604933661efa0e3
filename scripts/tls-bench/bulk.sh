#!/usr/bin/env bash
# Bulk: 16 KiB echoes over tls:// beside tcp:// (bench -c 4 --depth 2),
# MB/s (one direction) per second of server CPU; server on CPU 0, bench on 1.
# Usage: scripts/tls-bench/bulk.sh [ECHOPLEX] [SECONDS]
set -euo pipefail
E=${1:-target/release/echoplex}; D=${2:-10}
W=$(mktemp -d /tmp/echoplex-tls-bulk.XXXXXX); trap 'rm -rf "$W"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/ec.key" -out "$W/ec.pem" \
  -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
chmod 600 "$W/ec.key"
hz=$(getconf CLK_TCK)
for kind in tcp tls; do
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  taskset -c 0 "$E" serve "$kind://127.0.0.1:$port" --tls-cert "$W/ec.pem" --tls-key "$W/ec.key" >/dev/null 2>&1 &
  pid=$!; sleep 1
  b=$(awk '{print $14+$15}' "/proc/$pid/stat")
  out=$(taskset -c 1 "$E" bench "$kind://127.0.0.1:$port" -k -c 4 -s 16384 --depth 2 -d "$D" 2>&1)
  a=$(awk '{print $14+$15}' "/proc/$pid/stat")
  msgs=$(echo "$out" | grep -o "[0-9,]* echoed" | tr -d ', echoed')
  cpu=$(echo "scale=2; ($a-$b)/$hz" | bc)
  mb=$(echo "scale=1; $msgs*16384/1000000" | bc)
  echo "$kind: $msgs echoes of 16 KiB ($mb MB each way) in ${D}s, server CPU ${cpu}s: $(echo "scale=0; $mb/$cpu" | bc) MB/s per server CPU second"
  kill "$pid"; wait "$pid" 2>/dev/null || true
done
