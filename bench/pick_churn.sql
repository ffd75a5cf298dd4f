-- One allocation and its release, as wallet-pool writes them (pgbench script; see bench/pick_churn.py): the
-- FIFO pick over the pool's free wallets (FOR UPDATE SKIP LOCKED, walking ix_wallet_free_fifo), the
-- reservation, and the release that frees the wallet again. Each run leaves dead row versions behind.
\set order random(1, 2000000000)
BEGIN;
WITH pick AS (
    SELECT id FROM wallet_pool.wallet
    WHERE status = 'free' AND currency = 'BTC' AND network = 'bitcoin'
      AND (released_at IS NULL OR released_at <= now())
    ORDER BY released_at ASC NULLS FIRST, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
UPDATE wallet_pool.wallet AS w
SET status = 'reserved', order_id = 'churn-' || :order, reserved_at = now(),
    allocation_count = w.allocation_count + 1
FROM pick WHERE w.id = pick.id
RETURNING w.id AS wallet_id \gset
COMMIT;
UPDATE wallet_pool.wallet SET status = 'free', order_id = NULL, released_at = now() WHERE id = :wallet_id;
