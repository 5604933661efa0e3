#!/bin/bash
# callgrind instructions of the daemon for one load run: $1 kind (tcp|ws), $2 conns, $3 msgs per conn
HERE=$(cd "$(dirname "$0")" && pwd)
BIN=${ECHOPLEX_BIN:-$HERE/../../target/release/echoplex}
T=$(mktemp -d)
out=$T/callgrind.$1.$2.$3.out
valgrind --tool=callgrind --callgrind-out-file=$out $BIN serve tcp://127.0.0.1:0 http://127.0.0.1:0 > $T/cg.stdout 2>$T/cg.stderr &
vp=$!
for i in $(seq 1 300); do grep -q ready $T/cg.stdout && break; sleep 0.1; done
tcp=$(grep -o 'tcp://[0-9.:]*' $T/cg.stdout | head -1); http=$(grep -o 'http://[0-9.:]*' $T/cg.stdout | head -1)
if [ $1 = tcp ]; then port=${tcp##*:}; else port=${http##*:}; fi
timeout 600 python3 $HERE/load.py $1 $port $2 $3
kill -TERM $vp; wait $vp
grep -E "^(summary|totals):" $out | head -1
