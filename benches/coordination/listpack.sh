#!/bin/sh
# MEMORY USAGE and encoding of one freshly registered record with the bench's
# key and value sizes, under Redis' default hash-max-listpack-value (64):
# schema 2 kept the 162-byte data in one field; schema 3 keeps it in pieces
# of at most 64 bytes (lua/include/data.lua).
P=6399; redis-server --port $P --save '' --appendonly no --daemonize yes --pidfile /tmp/lp.pid >/dev/null
sleep 0.5
DATA='{"template":"base-v2","alias":"code-interpreter","cpu":2,"mem_mb":1024,"disk_mb":4096,"envd":"0.2.1","node":"node-0042","meta":{"owner":"bench","purpose":"load"}}'
K='sbx:{00000000-0000-4000-8000-000000000001}:rec:i0000000000000000001'
F='lc 9a4b94c26ac0 state running exec e0000000-0000-4000-8000-000000000001 end_ms 1767225600000 fence 0'
redis-cli -p $P hset "$K" v 2 $F data "$DATA" >/dev/null
echo "schema 2 (data in one field): $(redis-cli -p $P object encoding "$K") $(redis-cli -p $P memory usage "$K" samples 0) B"
redis-cli -p $P del "$K" >/dev/null
P1=$(printf %s "$DATA" | cut -c1-64); P2=$(printf %s "$DATA" | cut -c65-128); P3=$(printf %s "$DATA" | cut -c129-)
redis-cli -p $P hset "$K" v 3 $F data "$P1" data:2 "$P2" data:3 "$P3" >/dev/null
echo "schema 3 (data in pieces):    $(redis-cli -p $P object encoding "$K") $(redis-cli -p $P memory usage "$K" samples 0) B"
redis-cli -p $P shutdown nosave >/dev/null 2>&1
