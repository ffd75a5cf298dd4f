"""Customer sessions: order-scoped ones made with an order, full ones proven by an emailed one-time code."""
