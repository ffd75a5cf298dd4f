#!/usr/bin/env bash
# Make sure PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379) answer, starting them when they are
# installed but stopped. Fails with a message naming what is missing. Used by `make test` and `make bench`.
set -euo pipefail

PG_HOST=127.0.0.1 PG_PORT=5432 REDIS_HOST=127.0.0.1 REDIS_PORT=6379

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_for() {  # name host port
  for _ in $(seq 1 60); do port_open "$2" "$3" && return 0; sleep 0.5; done
  echo "error: $1 was started but does not answer on $2:$3" >&2; return 1
}

if ! port_open "$PG_HOST" "$PG_PORT"; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "PostgreSQL is stopped; starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
    wait_for PostgreSQL "$PG_HOST" "$PG_PORT"
  else
    echo "error: PostgreSQL is not reachable on $PG_HOST:$PG_PORT and is not installed here (no pg_ctlcluster)." >&2
    echo "       Install PostgreSQL 15 (trust auth for user postgres on 127.0.0.1) or set TEST_POSTGRES_URL." >&2
    exit 1
  fi
fi

if ! port_open "$REDIS_HOST" "$REDIS_PORT"; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "Redis is stopped; starting it"
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log
    wait_for Redis "$REDIS_HOST" "$REDIS_PORT"
  else
    echo "error: Redis is not reachable on $REDIS_HOST:$REDIS_PORT and redis-server is not installed." >&2
    exit 1
  fi
fi
echo "PostgreSQL and Redis are up"
