"""Pool levels: ``pool.low`` when a pool's free wallets run short, ``pool.recovered`` when they come back."""
