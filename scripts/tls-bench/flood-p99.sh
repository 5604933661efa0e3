#!/bin/bash
# tcp:// echo p99 on the reactor that also serves tls://, without and with a flood of garbage
# ClientHellos (200/s) + real handshakes (50/s). Release binary, one reactor.
set -u
B=${ECHOPLEX:-target/release/echoplex}
F=$(dirname "$0")/flood.py
$B serve tcp://127.0.0.1:0 tls://127.0.0.1:0 > /tmp/fr.out 2> /tmp/fr.err &
D=$!
for i in $(seq 50); do grep -q ready /tmp/fr.out && break; sleep 0.2; done
TCP=$(grep "listening tcp" /tmp/fr.out | awk '{print $2}')
TLS=$(grep "listening tls" /tmp/fr.out | awk '{print $2}')
HP=${TLS#tls://}; H=${HP%:*}; P=${HP##*:}
echo "daemon $D $TCP $TLS"
for round in quiet flood quiet flood; do
  if [ $round = flood ]; then timeout 20 python3 $F $H $P 10 > /tmp/fr.flood 2>&1 & FP=$!; sleep 0.5; fi
  $B bench $TCP --rate 1000 -d 8 -c 4 --timeout 5 --json > /tmp/fr.$round.json 2>/dev/null
  python3 -c "import json,sys; d=json.load(open('/tmp/fr.$round.json')); l=d['latency_us']; print('$round', 'p50', l['p50'], 'p99', l['p99'], 'p999', l.get('p999'), 'max', l.get('max'), 'msgs', d.get('messages'))"
  if [ $round = flood ]; then wait $FP; cat /tmp/fr.flood; fi
done
kill -TERM $D; wait $D
