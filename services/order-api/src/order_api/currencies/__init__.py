"""The currencies the desk takes orders in, as the website reads them (``GET /v1/currencies``): networks,
precision, limits, expiry and address formats, all from the settings and ``coin_addresses``."""
