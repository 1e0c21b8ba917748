#!/usr/bin/env bash
# Measures what the task collector costs on a large hub, with and without the optional index
#   CREATE INDEX hub_task_archive_state ON hub_task (state, archive) WHERE archive = false
# (PostgreSQL and SQLite: partial; MariaDB has no partial indexes: (state, archive)).
#
# For each database it builds a synthetic hub on kobo's real schema (testkit/data/schema-*.sql): 1,000
# workers and TASKS tasks (default 1,000,000: 1% active, the rest finished, 30% of those archived), then times
# the two task queries of backends/api/src/tasks.rs (median of RUNS runs, server-side where the database
# reports it) before and after creating the index, and prints a Markdown table.
#
# FLOW=1 measures the task flow's read instead (backends/sql/src/sql.rs: the latest times, then the tasks
# that started or finished since the last refresh, here the last 5 minutes of the synthetic history), before
# and after the two indexes the README documents:
#   CREATE INDEX hub_task_dt_started ON hub_task (dt_started)
#   CREATE INDEX hub_task_dt_finished ON hub_task (dt_finished)
#
# Usage: [FLOW=1] bench/task-query-cost.sh [sqlite] [postgres] [mariadb]      (default: all three)
# Env: TASKS (default 1000000), RUNS (default 5), PGUSER (default: postgres, else root).
set -euo pipefail
cd "$(dirname "$0")/.."
TASKS=${TASKS:-1000000}
FLOW=${FLOW:-}
RUNS=${RUNS:-5}
SHARED=testkit/data
DB=kobo_bench_taskcost
targets=("$@"); [ ${#targets[@]} -eq 0 ] && targets=(sqlite postgres mariadb)

GROUPS_SQL="SELECT t.state, a.name, c.name, t.n, t.oldest FROM (SELECT state, arch_id, channel_id, count(*) AS n, min(dt_created) AS oldest FROM hub_task WHERE archive = false AND state IN (0, 1, 2, 8) GROUP BY state, arch_id, channel_id) t JOIN hub_arch a ON a.id = t.arch_id JOIN hub_channel c ON c.id = t.channel_id"
# The task flow's statements: a task is created every 30 s, started 60 s and finished 600 s after its creation;
# the last refresh was 5 minutes before the newest creation.
SINCE_EPOCH=$((1700000000 + TASKS * 30 - 300))
SINCE_TEXT=$(date -u -d "@$SINCE_EPOCH" '+%Y-%m-%d %H:%M:%S')
# One subquery per column: SQLite reads a lone max() from the index, not two in one SELECT.
LATEST_SQL="SELECT (SELECT max(dt_started) FROM hub_task), (SELECT max(dt_finished) FROM hub_task)"
FLOW_SQL="SELECT t.id, t.state, t.method, c.name, t.dt_created, t.dt_started, t.dt_finished FROM hub_task t JOIN hub_channel c ON c.id = t.channel_id WHERE (t.dt_started >= SINCE OR t.dt_finished >= SINCE) AND t.archive = false"
STARTED_EXPR="CASE WHEN n % 100 = 0 AND n % 400 <> 200 THEN NULL ELSE 60 END"
FINISHED_EXPR="CASE WHEN n % 100 = 0 THEN NULL ELSE 600 END"
WORKERS_SQL="SELECT w.name, t.state, t.n FROM (SELECT state, worker_id, count(*) AS n FROM hub_task WHERE archive = false AND state IN (1, 2) GROUP BY state, worker_id) t JOIN hub_worker w ON w.id = t.worker_id"

# The synthetic rows, in SQL every database understands once `n` (1..TASKS) and `wid` (1..1000) exist.
# state: 1% active (0,1,2,8), the rest finished (3..7); archive: 30% of the finished ones.
STATE_EXPR="CASE WHEN n % 100 = 0 THEN (CASE n % 400 WHEN 0 THEN 0 WHEN 100 THEN 1 WHEN 200 THEN 2 ELSE 8 END) ELSE 3 + n % 5 END"
ARCHIVE_EXPR="CASE WHEN n % 100 <> 0 AND n % 10 < 3 THEN 1 ELSE 0 END"
WORKER_EXPR="CASE WHEN n % 400 IN (100, 200) OR n % 100 <> 0 THEN 1 + n % 1000 ELSE NULL END"

median() { sort -n | awk '{a[NR]=$1} END {m=(NR+1)/2; if (NR%2) print a[m]; else print (a[NR/2]+a[NR/2+1])/2}'; }

row() { printf '| %s | %s | %s | %s | %s |\n' "$@"; }

bench_sqlite() {
  local file; file=$(mktemp -d)/hub.sqlite3
  python3 - "$file" "$SHARED" "$TASKS" "$RUNS" "$GROUPS_SQL" "$WORKERS_SQL" "$STATE_EXPR" "$ARCHIVE_EXPR" "$WORKER_EXPR" \
    "$FLOW" "$LATEST_SQL" "${FLOW_SQL//SINCE/\'$SINCE_TEXT\'}" "$STARTED_EXPR" "$FINISHED_EXPR" <<'PY'
import sqlite3, sys, time, statistics
file, shared, tasks, runs, groups_sql, workers_sql, state, archive, worker, flow, latest_sql, flow_sql, started, finished = sys.argv[1:]
tasks, runs = int(tasks), int(runs)
c = sqlite3.connect(file)
c.executescript(open(f"{shared}/schema-sqlite.sql").read())
fixture = [l for l in open(f"{shared}/fixture.sql") if l.startswith(("INSERT INTO auth_user", "INSERT INTO hub_arch", "INSERT INTO hub_channel"))]
c.executescript("".join(fixture))
c.execute("WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < 1000) "
          "INSERT INTO hub_worker (id, worker_key, name, enabled, max_load, max_tasks, ready, task_count, current_load, min_priority) "
          "SELECT n, 'key' || n, printf('worker-%05d.example.com', n), 1, 4, 0, 1, 0, 0, 0 FROM s")
c.execute(f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {tasks}) "
          "INSERT INTO hub_task (id, archive, state, label, exclusive, method, args, result, waiting, awaited, dt_created, dt_started, dt_finished, priority, weight, subtask_count, arch_id, channel_id, owner_id, worker_id) "
          f"SELECT n, {archive}, {state}, '', 0, 'Method', '{{}}', '', 0, 0, datetime(1700000000 + n * 30, 'unixepoch'), "
          f"datetime(1700000000 + n * 30 + ({started}), 'unixepoch'), datetime(1700000000 + n * 30 + ({finished}), 'unixepoch'), "
          f"10, 1, 0, 1 + n % 6, 1 + n % 4, 1, {worker} FROM s")
c.commit(); c.execute("ANALYZE"); c.commit()
def timed(sql):
    out = []
    for _ in range(runs):
        t = time.perf_counter(); c.execute(sql).fetchall(); out.append((time.perf_counter() - t) * 1000)
    return statistics.median(out)
res = {}
for label in ("no index", "index"):
    if label == "index" and flow:
        c.execute("CREATE INDEX hub_task_dt_started ON hub_task (dt_started)")
        c.execute("CREATE INDEX hub_task_dt_finished ON hub_task (dt_finished)"); c.execute("ANALYZE"); c.commit()
    elif label == "index":
        c.execute("CREATE INDEX hub_task_archive_state ON hub_task (state, archive) WHERE archive = false"); c.execute("ANALYZE"); c.commit()
    if flow:
        rows = len(c.execute(flow_sql).fetchall())
        plan = " / ".join(r[-1] for r in c.execute("EXPLAIN QUERY PLAN " + flow_sql).fetchall())
        print(f"SQLite, {label}: {rows} rows; plan: {plan}", file=sys.stderr)
        res[label] = (timed(latest_sql), timed(flow_sql))
    else:
        res[label] = (timed(groups_sql), timed(workers_sql))
for label, (g, w) in res.items():
    print(f"| SQLite | {label} | {g:.1f} | {w:.1f} | {g + w:.1f} |")
PY
  rm -rf "$(dirname "$file")"
}

psql_cmd() { psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -U "$PGUSER" "$@"; }

bench_postgres() {
  PGUSER=${PGUSER:-postgres}
  psql_cmd -d test -c "SELECT 1" >/dev/null 2>&1 || PGUSER=root
  psql_cmd -d test -c "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
  psql_cmd -d $DB -f "$SHARED/schema-postgres.sql" >/dev/null
  grep -E '^INSERT INTO (auth_user|hub_arch|hub_channel) ' "$SHARED/fixture.sql" | psql_cmd -d $DB >/dev/null
  psql_cmd -d $DB >/dev/null <<SQL
SET TIME ZONE 'UTC';
INSERT INTO hub_worker (id, worker_key, name, enabled, max_load, max_tasks, ready, task_count, current_load, min_priority)
  SELECT n, 'key' || n, format('worker-%s.example.com', lpad(n::text, 5, '0')), true, 4, 0, true, 0, 0, 0 FROM generate_series(1, 1000) n;
INSERT INTO hub_task (id, archive, state, label, exclusive, method, args, result, waiting, awaited, dt_created, dt_started, dt_finished, priority, weight, subtask_count, arch_id, channel_id, owner_id, worker_id)
  SELECT n, ($ARCHIVE_EXPR) = 1, $STATE_EXPR, '', false, 'Method', '{}', '', false, false, to_timestamp(1700000000 + n * 30),
    to_timestamp(1700000000 + n * 30 + ($STARTED_EXPR)), to_timestamp(1700000000 + n * 30 + ($FINISHED_EXPR)), 10, 1, 0, 1 + n % 6, 1 + n % 4, 1, $WORKER_EXPR
  FROM generate_series(1, $TASKS) n;
VACUUM ANALYZE hub_task;
SQL
  for label in "no index" "index"; do
    local first=$GROUPS_SQL second=$WORKERS_SQL
    if [ -n "$FLOW" ]; then
      first=$LATEST_SQL second=${FLOW_SQL//SINCE/TIMESTAMPTZ \'$SINCE_TEXT+00\'}
    fi
    if [ "$label" = index ] && [ -n "$FLOW" ]; then
      psql_cmd -d $DB -c "CREATE INDEX hub_task_dt_started ON hub_task (dt_started)" -c "CREATE INDEX hub_task_dt_finished ON hub_task (dt_finished)" -c "ANALYZE hub_task" >/dev/null
    elif [ "$label" = index ]; then
      psql_cmd -d $DB -c "CREATE INDEX hub_task_archive_state ON hub_task (state, archive) WHERE archive = false" -c "ANALYZE hub_task" >/dev/null
    fi
    if [ -n "$FLOW" ]; then
      echo "PostgreSQL, $label:" >&2
      psql_cmd -d $DB -At -c "EXPLAIN $second" | sed 's/^/    /' >&2
    fi
    local g w
    g=$(for _ in $(seq "$RUNS"); do psql_cmd -d $DB -At -c "EXPLAIN (ANALYZE, FORMAT JSON) $first" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Execution Time"])'; done | median)
    w=$(for _ in $(seq "$RUNS"); do psql_cmd -d $DB -At -c "EXPLAIN (ANALYZE, FORMAT JSON) $second" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["Execution Time"])'; done | median)
    row PostgreSQL "$label" "$(printf %.1f "$g")" "$(printf %.1f "$w")" "$(awk "BEGIN {printf \"%.1f\", $g + $w}")"
  done
  psql_cmd -d test -c "DROP DATABASE $DB" >/dev/null
}

my() { mysql -h 127.0.0.1 -P 3306 -u root "$@"; }

bench_mariadb() {
  my -e "DROP DATABASE IF EXISTS $DB; CREATE DATABASE $DB"
  my $DB < "$SHARED/schema-mysql.sql"
  grep -E '^INSERT INTO (auth_user|hub_arch|hub_channel) ' "$SHARED/fixture.sql" | my $DB
  my $DB >/dev/null <<SQL
INSERT INTO hub_worker (id, worker_key, name, enabled, max_load, max_tasks, ready, task_count, current_load, min_priority)
  SELECT seq, CONCAT('key', seq), CONCAT('worker-', LPAD(seq, 5, '0'), '.example.com'), 1, 4, 0, 1, 0, 0, 0 FROM seq_1_to_1000;
SET @@session.foreign_key_checks = 0;
SET time_zone = '+00:00';
INSERT INTO hub_task (id, archive, state, label, exclusive, method, args, result, waiting, awaited, dt_created, dt_started, dt_finished, priority, weight, subtask_count, arch_id, channel_id, owner_id, worker_id)
  SELECT n, $ARCHIVE_EXPR, $STATE_EXPR, '', 0, 'Method', '{}', '', 0, 0, FROM_UNIXTIME(1700000000 + n * 30),
    FROM_UNIXTIME(1700000000 + n * 30 + ($STARTED_EXPR)), FROM_UNIXTIME(1700000000 + n * 30 + ($FINISHED_EXPR)), 10, 1, 0, 1 + n % 6, 1 + n % 4, 1, $WORKER_EXPR
  FROM (SELECT seq AS n FROM seq_1_to_$TASKS) s;
ANALYZE TABLE hub_task;
SQL
  for label in "no index" "index"; do
    local first=$GROUPS_SQL second=$WORKERS_SQL
    if [ -n "$FLOW" ]; then
      first=$LATEST_SQL second=${FLOW_SQL//SINCE/\'$SINCE_TEXT\'}
    fi
    if [ "$label" = index ] && [ -n "$FLOW" ]; then
      my $DB -e "CREATE INDEX hub_task_dt_started ON hub_task (dt_started); CREATE INDEX hub_task_dt_finished ON hub_task (dt_finished); ANALYZE TABLE hub_task" >/dev/null
    elif [ "$label" = index ]; then
      my $DB -e "CREATE INDEX hub_task_archive_state ON hub_task (state, archive); ANALYZE TABLE hub_task" >/dev/null
    fi
    if [ -n "$FLOW" ]; then
      echo "MariaDB, $label:" >&2
      my $DB -e "EXPLAIN $second" | sed 's/^/    /' >&2
    fi
    # Server-side duration from the profiler, in ms.
    local g w
    g=$(for _ in $(seq "$RUNS"); do my $DB -N -e "SET profiling = 1; $first; SHOW PROFILES" | tail -n 1 | awk '{print $2 * 1000}'; done | median)
    w=$(for _ in $(seq "$RUNS"); do my $DB -N -e "SET profiling = 1; $second; SHOW PROFILES" | tail -n 1 | awk '{print $2 * 1000}'; done | median)
    row MariaDB "$label" "$(printf %.1f "$g")" "$(printf %.1f "$w")" "$(awk "BEGIN {printf \"%.1f\", $g + $w}")"
  done
  my -e "DROP DATABASE $DB"
}

if [ -n "$FLOW" ]; then
  echo "Task flow read, $TASKS tasks (1% active), 1,000 workers, since $SINCE_TEXT; median of $RUNS runs, ms"
  echo
  row database "dt_started, dt_finished indexes" "latest times" "tasks since" "flow total"
else
  echo "Task collector cost, $TASKS tasks (1% active), 1,000 workers; median of $RUNS runs, ms"
  echo
  row database index "per (state, arch, channel)" "per (worker, state)" "task refresh total"
fi
row --- --- --- --- ---
for t in "${targets[@]}"; do
  case $t in
    sqlite) bench_sqlite ;;
    postgres) bench_postgres ;;
    mariadb) bench_mariadb ;;
    *) echo "unknown target $t" >&2; exit 2 ;;
  esac
done
