#!/bin/bash
# Server CPU (utime+stime, clock ticks) per message, tcp:// vs WebSocket, one daemon, alternating runs.
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${ECHOPLEX_BIN:-$HERE/../../target/release/echoplex}
T=$(mktemp -d)
$BIN serve tcp://127.0.0.1:0 http://127.0.0.1:0 > $T/cpu.stdout 2>/dev/null &
dp=$!
for i in $(seq 1 100); do grep -q ready $T/cpu.stdout && break; sleep 0.1; done
tcp=$(grep -o 'tcp://[0-9.:]*' $T/cpu.stdout | head -1); http=$(grep -o 'http://[0-9.:]*' $T/cpu.stdout | head -1)
ticks() { awk '{print $14+$15}' /proc/$dp/stat; }
for round in 1 2 3; do
  for kind in tcp ws; do
    if [ $kind = tcp ]; then port=${tcp##*:}; else port=${http##*:}; fi
    a=$(ticks); timeout 300 python3 $HERE/load.py $kind $port 100 $1 >/dev/null; b=$(ticks)
    echo "$kind round $round: $((b-a)) ticks for $((100*$1)) messages: $(python3 -c "print(f'{($b-$a)*10000/(100*$1):.2f} us/msg')")"
  done
done
kill -TERM $dp; wait $dp
