"""How a receiver checks a delivery, with the standard library only: the README's receiver guide quotes this
function, and the tests check real deliveries with it. Copy it into the website."""

import base64
import hashlib
import hmac
import time


def verify_webhook(secret: str, headers: dict[str, str], body: bytes, tolerance: int = 300) -> bool:
    """True when ``body`` was signed with ``secret`` (``whsec_…``) and sent less than ``tolerance`` s ago."""
    webhook_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False  # too old or too new: a replay
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(
        hmac.compare_digest(f"v1,{expected}", given) for given in headers["webhook-signature"].split(" ")
    )
