#!/usr/bin/env bash
# Same-run baseline for the PostgreSQL matrix: the statements the store ran before this change
# (a window as a plain occurred_at condition over the whole log; stats as one GROUPING SETS
# aggregate over every event of the window), timed by psql on the same database.
db=${1:-bitacora_bench_search_1000000}
run() { # label, sql
  local best=()
  for i in 1 2 3 4 5 6; do
    t=$(psql -h 127.0.0.1 -U postgres -d "$db" -qAt -c '\timing on' -c "$2" 2>&1 | grep -o 'Time: [0-9.]*' | awk '{print $2}')
    best+=("$t")
  done
  printf '%-40s %s\n' "$1" "$(printf '%s\n' "${best[@]:1}" | sort -n | awk '{a[NR]=$1} END {print "p50 " a[int((NR+1)/2)] " ms, max " a[NR] " ms (5 runs after 1 warm-up)"}')"
}
for d in 01 13 25; do
  for o in DESC ASC; do
    run "window 2026-01-$d cursor $o" "SELECT seq, leaf_hash, body FROM events WHERE tenant_id = 1 AND occurred_at >= '2026-01-$d' AND occurred_at < '2026-01-$d'::timestamptz + interval '1 day' ORDER BY seq $o LIMIT 51"
    run "window 2026-01-$d outcome numbered $o" "SELECT count(*) FROM events WHERE tenant_id = 1 AND outcome = 1 AND occurred_at >= '2026-01-$d' AND occurred_at < '2026-01-$d'::timestamptz + interval '1 day'"
  done
done
for days in 30 90; do
  run "stats $days days, ends mid-day" "SELECT GROUPING(day, category, severity, outcome, actor_id, ip)::int4, count(*) FROM (SELECT date_trunc('day', occurred_at AT TIME ZONE 'UTC') AS day, category, severity, outcome, actor_id, ip FROM events WHERE tenant_id = 1 AND occurred_at >= '2026-01-25T13:37:11Z'::timestamptz - interval '$days days' AND occurred_at < '2026-01-25T13:37:11Z') w GROUP BY GROUPING SETS ((day), (category), (severity), (outcome), (actor_id), (ip), ())"
done
