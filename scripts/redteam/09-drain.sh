#!/usr/bin/env bash
# Item 6: with $MRP_HOME/config.json present (written by `mrp config set`, as the README says),
# ONE signal to `mrp run` must drain (the running 3 s handler finishes, its reply goes out) and exit 0
# within --grace. Tried piped (SIGTERM, SIGINT) and on a TTY via script(1) (SIGTERM, SIGINT).
# Usage: bash 09-drain.sh   (NOCONFIG=1: same with --relay/--key flags and no config.json; HOWS="pipe-TERM ...")
set -u
ROOT=${MRP_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
R=$(cd "$(dirname "$0")" && pwd)
T=/tmp/rt/d09-$$; mkdir -p $T
node -e "
import('$R/lib.mjs').then(async (l) => {
  const r = await l.startRelay('$T/relay');
  require('fs').writeFileSync('$T/url', r.url);
  process.on('SIGTERM', async () => { await r.stop(); process.exit(0); });
  setInterval(() => {}, 1000);
});" & RELAY=$!
for i in $(seq 50); do [ -s $T/url ] && break; sleep 0.2; done
URL=$(cat $T/url)
fails=0
for how in ${HOWS:-pipe-TERM pipe-INT tty-TERM tty-INT}; do
  H=$T/home-$how; mkdir -p -m 700 $H
  export MRP_HOME=$H
  node $ROOT/bin/mrp.js keygen >/dev/null 2>&1
  if [ -z "${NOCONFIG:-}" ]; then
    node $ROOT/bin/mrp.js config set relay $URL >/dev/null
    node $ROOT/bin/mrp.js config set key_file $H/agent.key >/dev/null
    FLAGS=""
  else FLAGS="--relay $URL --key $H/agent.key"; fi
  echo 'export default async (msg, ctx) => { await new Promise((r) => setTimeout(r, 3000)); return { ok: 1 }; };' > $H/slow.mjs
  AGENT=$(node $ROOT/bin/mrp.js whoami --json --key $H/agent.key | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).public_key))')
  case $how in
    pipe-*) (node $ROOT/bin/mrp.js run --handler $H/slow.mjs --grace 10s --log-format json $FLAGS > $H/out 2>&1; echo $? > $H/rc) &
            ;;
    tty-*)  (script -qfec "stty cols 100 rows 30; exec node $ROOT/bin/mrp.js run --handler $H/slow.mjs --grace 10s $FLAGS" /dev/null > $H/out 2>&1; echo $? > $H/rc) &
            ;;
  esac
  sleep 2.5
  PEER=$T/peer-$how.key; MRP_HOME=$T/peerhome-$how node $ROOT/bin/mrp.js keygen --key $PEER >/dev/null 2>&1 || MRP_HOME=$T/peerhome-$how node $ROOT/bin/mrp.js keygen >/dev/null 2>&1
  [ -f $PEER ] || PEER=$T/peerhome-$how/agent.key
  MRP_HOME=$T/peerhome-$how node $ROOT/bin/mrp.js send --relay $URL --key $PEER --to $AGENT --text hi > /dev/null 2>&1
  sleep 1
  PID=$(pgrep -f "mrp.js run --handler $H/slow.mjs" | while read p; do [ "$(ps -o comm= -p $p)" = node ] && echo $p; done | head -1)
  SIG=${how#*-}
  T0=$(date +%s.%N)
  kill -$SIG $PID
  for i in $(seq 150); do [ -s $H/rc ] && break; sleep 0.1; done
  T1=$(date +%s.%N)
  RC=$(cat $H/rc 2>/dev/null || echo none)
  REPLY=$(MRP_HOME=$T/peerhome-$how node $ROOT/bin/mrp.js recv --relay $URL --key $PEER --json 2>/dev/null | grep -c '"ok":1')
  secs=$(echo "$T1 - $T0" | bc)
  verdict=ok; { [ "$RC" = 0 ] && [ "$REPLY" -ge 1 ]; } || { verdict=FAIL; fails=$((fails+1)); }
  echo "$verdict $how: one SIG$SIG -> exit $RC after ${secs}s; reply delivered: $REPLY"
  [ $verdict = FAIL ] && tail -5 $H/out | cut -c1-200
  [ "$RC" = none ] && kill -9 $PID 2>/dev/null
done
kill $RELAY; wait $RELAY 2>/dev/null
[ $fails = 0 ] && echo HELD || echo "FAILED ($fails)"
