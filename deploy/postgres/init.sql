-- Exchange Desk: one database, one schema and one login role per service; order-api has a second one.
--
-- The postgres image runs this file once, on an empty data directory, from /docker-entrypoint-initdb.d:
-- as the superuser, connected to POSTGRES_DB (psql's :DBNAME), with ON_ERROR_STOP. Each role owns the schema
-- of its name and has no rights on the others' schemas, nor on "public". Alembic (the <svc>-migrate jobs)
-- then creates the tables as that role, so every table is owned by the service that uses it.
--
-- order-api itself runs as a second role, order_api_runtime: its migrations (run as order_api, with
-- ORDER_API_DATABASE_RUNTIME_ROLE=order_api_runtime) grant it rows of every table, but on audit_log only
-- INSERT and SELECT, so the service can neither change its audit trail nor disable the trigger guarding it.
-- The only table it owns is the one it vacuums itself (its outbox; PostgreSQL 15 lets only an owner
-- vacuum), which order_api hands over to it: hence order_api's membership in order_api_runtime.
--
-- Passwords come from the container's environment (psql 15's \getenv): ORDER_API_DB_PASSWORD,
-- ORDER_API_RUNTIME_DB_PASSWORD, WALLET_POOL_DB_PASSWORD, NOTIFIER_DB_PASSWORD and TELEGRAM_GATEWAY_DB_PASSWORD,
-- which docker-compose.yml requires (`make compose-env` mints them). One unset stops this file with an error
-- naming it, before anything is created: no password is guessed. To run it by hand:
--   ORDER_API_DB_PASSWORD=... (all five) psql -v ON_ERROR_STOP=1 -d exchange_desk -f deploy/postgres/init.sql

\set ON_ERROR_STOP on

\getenv order_api_password ORDER_API_DB_PASSWORD
\if :{?order_api_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'ORDER_API_DB_PASSWORD is not set (init.sql guesses no password)'; END $$;
\endif
\getenv order_api_runtime_password ORDER_API_RUNTIME_DB_PASSWORD
\if :{?order_api_runtime_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'ORDER_API_RUNTIME_DB_PASSWORD is not set (init.sql guesses no password)'; END $$;
\endif
\getenv wallet_pool_password WALLET_POOL_DB_PASSWORD
\if :{?wallet_pool_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'WALLET_POOL_DB_PASSWORD is not set (init.sql guesses no password)'; END $$;
\endif
\getenv notifier_password NOTIFIER_DB_PASSWORD
\if :{?notifier_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'NOTIFIER_DB_PASSWORD is not set (init.sql guesses no password)'; END $$;
\endif
\getenv telegram_gateway_password TELEGRAM_GATEWAY_DB_PASSWORD
\if :{?telegram_gateway_password}
\else
  DO $$ BEGIN RAISE EXCEPTION 'TELEGRAM_GATEWAY_DB_PASSWORD is not set (init.sql guesses no password)'; END $$;
\endif

BEGIN;

-- Nobody gets anything by default: only the four service roles may connect, and "public" is closed.
REVOKE ALL ON DATABASE :"DBNAME" FROM PUBLIC;
REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- CREATE on the database is needed because servicekit.migrations runs `CREATE SCHEMA IF NOT EXISTS <own>`,
-- and PostgreSQL checks that privilege before it sees the schema already exists. It lets a role create new,
-- empty schemas of its own; it gives no access to any other role's schema.

CREATE ROLE order_api LOGIN PASSWORD :'order_api_password';
GRANT CONNECT, CREATE ON DATABASE :"DBNAME" TO order_api;
CREATE SCHEMA order_api AUTHORIZATION order_api;
ALTER ROLE order_api IN DATABASE :"DBNAME" SET search_path = order_api;

CREATE ROLE order_api_runtime LOGIN PASSWORD :'order_api_runtime_password';
GRANT CONNECT ON DATABASE :"DBNAME" TO order_api_runtime;
ALTER ROLE order_api_runtime IN DATABASE :"DBNAME" SET search_path = order_api;
GRANT order_api_runtime TO order_api;

CREATE ROLE wallet_pool LOGIN PASSWORD :'wallet_pool_password';
GRANT CONNECT, CREATE ON DATABASE :"DBNAME" TO wallet_pool;
CREATE SCHEMA wallet_pool AUTHORIZATION wallet_pool;
ALTER ROLE wallet_pool IN DATABASE :"DBNAME" SET search_path = wallet_pool;

CREATE ROLE notifier LOGIN PASSWORD :'notifier_password';
GRANT CONNECT, CREATE ON DATABASE :"DBNAME" TO notifier;
CREATE SCHEMA notifier AUTHORIZATION notifier;
ALTER ROLE notifier IN DATABASE :"DBNAME" SET search_path = notifier;

CREATE ROLE telegram_gateway LOGIN PASSWORD :'telegram_gateway_password';
GRANT CONNECT, CREATE ON DATABASE :"DBNAME" TO telegram_gateway;
CREATE SCHEMA telegram_gateway AUTHORIZATION telegram_gateway;
ALTER ROLE telegram_gateway IN DATABASE :"DBNAME" SET search_path = telegram_gateway;

COMMIT;
