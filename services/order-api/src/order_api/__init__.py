"""order-api: the public order API — customers, orders, operators, statistics, audit."""
