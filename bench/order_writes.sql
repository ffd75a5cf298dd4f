-- One order, as order-api and wallet-pool write it (pgbench script; see bench/orders.py).
-- (No ':' inside string literals: pgbench would read it as a variable, hence chr(58).)
-- The services' statements for a new customer's order, each a transaction by itself, as the services send
-- them: order-api creates the customer, the order's session, the order, its history row and the claim of its
-- Idempotency-Key; wallet-pool reserves the wallet free the longest (FOR UPDATE SKIP LOCKED) and records the
-- allocation; order-api records the address, the stored response and order.created in its outbox; the
-- outbox relay marks the event delivered (its own transaction; its batched claim is left out).
SELECT gen_random_uuid()::text AS cid, gen_random_uuid()::text AS oid, gen_random_uuid()::text AS sid,
       gen_random_uuid()::text AS eid, md5(random()::text) AS ikey,
       md5(random()::text) || md5(random()::text) AS eidx,
       '10.' || (random() * 255)::int || '.' || (random() * 255)::int || '.' || (random() * 255)::int AS ip \gset
WITH by_ip AS (
    SELECT count(*) AS open_orders FROM (
        SELECT 1 FROM order_api."order" WHERE client_ip = :ip
          AND status = ANY (ARRAY['queued', 'awaiting_deposit', 'in_progress']::varchar[]) LIMIT 20
    ) AS open_order
), new_customer AS (
    INSERT INTO order_api.customer (id, email_sealed, email_index, locale, role, created_at, completed_orders)
    SELECT :cid, repeat('s', 90), :eidx, 'en', 'customer', now(), 0 FROM by_ip WHERE by_ip.open_orders < 20
    ON CONFLICT (email_index) DO NOTHING
    RETURNING id
), new_session AS (
    INSERT INTO order_api.customer_session (id, customer_id, token_hash, kind, order_id, created_at, expires_at)
    SELECT :sid, id, md5(random()::text) || md5(random()::text), 'order', :oid, now(), now() + interval '30 days'
    FROM new_customer
), new_order AS (
    INSERT INTO order_api."order" (id, customer_id, session_id, from_currency, from_network, to_currency,
                                   to_network, amount, payout_address_sealed, locale, status, priority,
                                   allocation_state, client_ip, version, created_at, updated_at, expires_at)
    SELECT :oid, id, :sid, 'BTC', 'bitcoin', 'USDT', 'TRC20', 0.01, repeat('p', 110), 'en', 'queued', 'normal',
           'pending', :ip, 1, now(), now(), now() + interval '4 hours'
    FROM new_customer
    RETURNING id
), history AS (
    INSERT INTO order_api.order_event (order_id, from_status, to_status, actor, channel, correlation_id, details,
                                       created_at)
    SELECT id, NULL, 'queued', 'customer' || chr(58) || :cid, 'rest', md5(random()::text), '{}', now()
    FROM new_order
), claimed_key AS (
    INSERT INTO order_api.idempotency_key (owner, key, request_fingerprint, created_at)
    SELECT :eidx, :ikey, md5(random()::text) || md5(random()::text), now() FROM new_order
)
SELECT by_ip.open_orders, EXISTS (SELECT FROM new_order) AS created,
       EXISTS (SELECT FROM order_api.customer WHERE email_index = :eidx) AS known_before
FROM by_ip;
WITH pick AS (
    SELECT id, address FROM wallet_pool.wallet
    WHERE status = 'free' AND currency = 'BTC' AND network = 'bitcoin'
      AND (released_at IS NULL OR released_at <= now())
      AND NOT EXISTS (SELECT 1 FROM wallet_pool.wait_queue_entry WHERE currency = 'BTC' AND network = 'bitcoin')
    ORDER BY released_at ASC NULLS FIRST, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    INSERT INTO wallet_pool.allocation (order_id, currency, network, priority, status, wallet_id, address,
                                        requested_at, allocated_at)
    SELECT :oid, 'BTC', 'bitcoin', 0, 'allocated', pick.id, pick.address, now(), now() FROM pick
    ON CONFLICT (order_id) DO NOTHING
    RETURNING wallet_id
)
UPDATE wallet_pool.wallet
SET status = 'reserved', order_id = :oid, reserved_at = now(), allocation_count = wallet.allocation_count + 1
FROM claimed
WHERE wallet.id = claimed.wallet_id
RETURNING wallet.address AS wallet_address \gset
WITH settled AS (
    UPDATE order_api."order"
    SET status = 'awaiting_deposit', version = 2, updated_at = now(), deposit_address = :wallet_address,
        allocation_state = 'allocated', address_assigned_at = now(), queue_position = NULL,
        estimated_wait_seconds = NULL, expires_at = now() + interval '1 hour', announced_at = now()
    WHERE id = :oid AND version = 1 AND status = 'queued' AND announced_at IS NULL
    RETURNING id
), history AS (
    INSERT INTO order_api.order_event (order_id, from_status, to_status, actor, channel, correlation_id, details,
                                       created_at)
    SELECT id, 'queued', 'awaiting_deposit', 'system' || chr(58) || 'wallet-pool', 'system', md5(random()::text),
           '{}', now()
    FROM settled
), announcement AS (
    INSERT INTO order_api.outbox (id, destination, event_type, aggregate_id, payload, traceparent, created_at,
                                  available_at, attempts)
    SELECT :eid, 'notifier', 'order.created', id, ('{"order_id": "' || repeat('x', 600) || '"}')::json, NULL,
           now(), now(), 0
    FROM settled
), answered AS (
    UPDATE order_api.idempotency_key SET response_status = 201, response_sealed = repeat('r', 900),
           completed_at = now()
    WHERE owner = :eidx AND key = :ikey AND EXISTS (SELECT FROM settled)
)
SELECT EXISTS (SELECT FROM settled) AS settled;
BEGIN;
UPDATE order_api.outbox SET delivered_at = now(), attempts = 1 WHERE id = :eid;
COMMIT;
