-- One order, as order-api and wallet-pool write it (pgbench script; see bench/orders.py).
-- (No ':' inside string literals: pgbench would read it as a variable, hence chr(58).)
-- Three transactions, as in the services: order-api accepts the order; wallet-pool reserves the
-- wallet free the longest (FOR UPDATE SKIP LOCKED); order-api records the address and queues order.created.
SELECT gen_random_uuid()::text AS cid, gen_random_uuid()::text AS oid,
       md5(random()::text) || md5(random()::text) AS eidx,
       '10.' || (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int AS ip \gset
BEGIN;
INSERT INTO order_api.customer (id, email_sealed, email_index, locale, role, created_at, completed_orders)
  VALUES (:cid, repeat('s', 90), :eidx, 'en', 'customer', now(), 0) ON CONFLICT (email_index) DO NOTHING;
SELECT id, completed_orders FROM order_api.customer WHERE email_index = :eidx;
SELECT id FROM order_api.customer WHERE id = :cid FOR UPDATE;
SELECT count(*) FROM (SELECT 1 FROM order_api."order" WHERE customer_id = :cid
  AND status IN ('queued', 'awaiting_deposit', 'in_progress') LIMIT 3) AS open_orders;
SELECT count(*) FROM (SELECT 1 FROM order_api."order" WHERE client_ip = :ip
  AND status IN ('queued', 'awaiting_deposit', 'in_progress') LIMIT 20) AS open_orders;
INSERT INTO order_api.customer_session (id, customer_id, token_hash, kind, order_id, created_at, expires_at)
  VALUES (gen_random_uuid()::text, :cid, md5(random()::text) || md5(random()::text), 'order', :oid, now(),
          now() + interval '30 days');
INSERT INTO order_api."order" (id, customer_id, session_id, from_currency, from_network, to_currency, to_network,
  amount, payout_address_sealed, locale, status, priority, allocation_state, client_ip, version, created_at,
  updated_at, expires_at)
  VALUES (:oid, :cid, NULL, 'BTC', 'bitcoin', 'USDT', 'TRC20', 0.01, repeat('p', 110), 'en', 'queued', 'normal',
          'pending', :ip, 1, now(), now(), now() + interval '4 hours');
INSERT INTO order_api.order_event (order_id, from_status, to_status, actor, channel, correlation_id, details, created_at)
  VALUES (:oid, NULL, 'queued', 'customer' || chr(58) || :cid, 'rest', md5(random()::text), '{}', now());
COMMIT;
BEGIN;
INSERT INTO wallet_pool.allocation (order_id, currency, network, priority, status, requested_at)
  VALUES (:oid, 'BTC', 'bitcoin', 0, 'queued', now()) ON CONFLICT (order_id) DO NOTHING RETURNING order_id;
UPDATE wallet_pool.wallet SET status = 'reserved', order_id = :oid, reserved_at = now(),
       allocation_count = allocation_count + 1
  WHERE id = (SELECT id FROM wallet_pool.wallet
              WHERE status = 'free' AND currency = 'BTC' AND network = 'bitcoin'
                AND (released_at IS NULL OR released_at <= now())
                AND NOT EXISTS (SELECT 1 FROM wallet_pool.wait_queue_entry q
                                WHERE q.currency = 'BTC' AND q.network = 'bitcoin')
              ORDER BY released_at NULLS FIRST, id LIMIT 1 FOR UPDATE SKIP LOCKED)
  RETURNING id AS wallet_id, address AS wallet_address \gset
UPDATE wallet_pool.allocation SET status = 'allocated', wallet_id = :wallet_id, address = :wallet_address,
       allocated_at = now() WHERE order_id = :oid;
COMMIT;
BEGIN;
UPDATE order_api."order" SET status = 'awaiting_deposit', version = version + 1, updated_at = now(),
       deposit_address = :wallet_address, allocation_state = 'allocated', address_assigned_at = now(),
       expires_at = now() + interval '1 hour'
  WHERE id = :oid AND version = 1;
INSERT INTO order_api.order_event (order_id, from_status, to_status, actor, channel, correlation_id, details, created_at)
  VALUES (:oid, 'queued', 'awaiting_deposit', 'system' || chr(58) || 'wallet-pool', 'system', md5(random()::text), '{}', now());
INSERT INTO order_api.outbox (id, destination, event_type, aggregate_id, payload, traceparent, created_at,
  available_at, attempts)
  VALUES (gen_random_uuid()::text, 'notifier', 'order.created', :oid, '{"order_id": "x", "status": "awaiting_deposit"}',
          NULL, now(), now(), 0);
UPDATE order_api."order" SET announced_at = now() WHERE id = :oid;
COMMIT;
