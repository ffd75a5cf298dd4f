"""wallet-pool: the deposit-address pool — FIFO allocation, the fair wait queue, release, pool health."""
