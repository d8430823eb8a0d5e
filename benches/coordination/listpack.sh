#!/bin/sh
# MEMORY USAGE of one freshly registered v2 record (the bench's key and value
# sizes), with Redis' default hash-max-listpack-value (64) and with 256.
P=6399; redis-server --port $P --save '' --appendonly no --daemonize yes --pidfile /tmp/lp.pid >/dev/null
sleep 0.5
DATA='{"template":"base-v2","alias":"code-interpreter","cpu":2,"mem_mb":1024,"disk_mb":4096,"envd":"0.2.1","node":"node-0042","meta":{"owner":"bench","purpose":"load"}}'
K='sbx:{00000000-0000-4000-8000-000000000001}:rec:i0000000000000000001'
for v in 64 256; do
  redis-cli -p $P config set hash-max-listpack-value $v >/dev/null
  redis-cli -p $P del "$K" >/dev/null
  redis-cli -p $P hset "$K" v 2 lc 9a4b94c26ac0 state running exec e0000000-0000-4000-8000-000000000001 end_ms 1767225600000 fence 0 data "$DATA" >/dev/null
  echo "hash-max-listpack-value $v: $(redis-cli -p $P object encoding "$K") $(redis-cli -p $P memory usage "$K" samples 0) B"
done
redis-cli -p $P shutdown nosave >/dev/null 2>&1
