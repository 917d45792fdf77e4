#!/usr/bin/env bash
# A terminal that reports 0 columns (script(1) without a controlling terminal, some CI/container
# ptys): `mrp run` (spinner) enters a synchronous loop writing ESC[1A ESC[0K forever (ora computes
# Infinity lines to clear: stringWidth/0), ~90% CPU, tens of MB of output, and ignores SIGTERM/SIGINT.
# Usage: bash 09b-tty-zero-columns.sh
ROOT=${MRP_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}; T=/tmp/rt/tz-$$; mkdir -p -m 700 $T
MRP_HOME=$T node $ROOT/bin/mrp.js keygen >/dev/null 2>&1
echo 'export default async () => ({ ok: 1 });' > $T/h.mjs
for cols in 0 80; do
  (MRP_HOME=$T script -qfec "stty cols $cols rows 24; exec node $ROOT/bin/mrp.js run --handler $T/h.mjs --relay http://127.0.0.1:1" /dev/null > $T/out-$cols 2>&1 &)
  sleep 3
  PID=$(pgrep -f "mrp.js run --handler $T/h.mjs" | while read p; do [ "$(ps -o comm= -p $p)" = node ] && echo $p; done | head -1)
  CPU=$(ps -o pcpu= -p $PID); kill -TERM $PID; sleep 3
  if kill -0 $PID 2>/dev/null; then ST="still running 3 s after SIGTERM"; kill -9 $PID; else ST="exited after SIGTERM"; fi
  echo "cols=$cols: cpu ${CPU}%, output $(stat -c %s $T/out-$cols) bytes in 3 s, $ST"
done
