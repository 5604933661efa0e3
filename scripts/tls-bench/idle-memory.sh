#!/usr/bin/env bash
# Idle memory per connection: echoplex's RSS before and after N idle
# connections (each did its handshake and one echo), tcp:// beside tls://
# (ECDSA P-256 certificate, TLS 1.3 from Python's ssl).
# Usage: scripts/tls-bench/idle-memory.sh [ECHOPLEX] [N]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
E=${1:-target/release/echoplex}; N=${2:-2000}
W=$(mktemp -d /tmp/echoplex-tls-mem.XXXXXX); trap 'rm -rf "$W"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$W/ec.key" -out "$W/ec.pem" \
  -days 2 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
chmod 600 "$W/ec.key"
rss() { awk '/VmRSS/{print $2}' "/proc/$1/status"; }
for kind in tcp tls; do
  port=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
  "$E" serve "$kind://127.0.0.1:$port" --tls-cert "$W/ec.pem" --tls-key "$W/ec.key" >/dev/null 2>"$W/$kind.log" &
  pid=$!; sleep 1
  before=$(rss "$pid")
  mkfifo "$W/hold-$kind"
  python3 "$here/hold.py" 127.0.0.1 "$port" "$N" "$kind" "$W/ec.pem" <"$W/hold-$kind" >"$W/hold-$kind.out" &
  exec 7>"$W/hold-$kind"
  for _ in $(seq 1 600); do grep -q held "$W/hold-$kind.out" 2>/dev/null && break; sleep 0.1; done
  sleep 1
  after=$(rss "$pid")
  echo "$kind: $N idle connections: RSS $before KiB -> $after KiB: $(( (after-before)*1024/N )) bytes per connection"
  exec 7>&-
  sleep 0.5
  kill "$pid"; wait "$pid" || true
done
