"""Mainnet address validation for the currencies the desk handles: deposit addresses imported into the pool
and customers' payout addresses; and the shape of a transaction hash on each chain
(:func:`validate_transaction_hash`), so one place knows the chains' formats.

:func:`validate_address` either returns the address in the form the pool stores (bech32 lower case,
Ethereum in EIP-55 checksum case, base58 unchanged) or raises :class:`InvalidAddressError` whose
``reason`` tells the operator what to fix. Only mainnet addresses are accepted: a deposit to a testnet
or otherwise unspendable address is money lost.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

import base58
from bech32 import CHARSET as BECH32_CHARSET
from bech32 import bech32_encode, bech32_hrp_expand, bech32_polymod, convertbits
from Crypto.Hash import keccak

__all__ = [
    "ADDRESS_FORMATS",
    "SUPPORTED",
    "AddressFormat",
    "InvalidAddressError",
    "InvalidTransactionHashError",
    "UnsupportedNetworkError",
    "default_network",
    "demo_address",
    "demo_transaction_hash",
    "validate_address",
    "validate_transaction_hash",
]

SUPPORTED: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        "BTC": ("bitcoin",),
        "ETH": ("ethereum",),
        "USDT": ("TRC20", "ERC20"),
    }
)
"""Currency → networks the desk accepts it on; the first one is the default."""


@dataclass(frozen=True, slots=True)
class AddressFormat:
    """What an address of one network looks like, for a form to check before it sends one.

    ``pattern`` matches every address :func:`validate_address` accepts once surrounding whitespace is trimmed
    (and refuses most that it refuses: a wrong prefix, length or alphabet); only the checksum is left to
    :func:`validate_address`. It is written in the syntax ECMAScript and Python share (no flags, no
    look-behind), so a browser can use it as it is.
    """

    description: str
    pattern: str


_BASE58 = "[1-9A-HJ-NP-Za-km-z]"
_BECH32_LOWER = "[ac-hj-np-z02-9]"  # bech32's alphabet: no 1, b, i or o
_BECH32_UPPER = "[AC-HJ-NP-Z02-9]"
_EVM = AddressFormat(
    description="0x and 40 hexadecimal digits; in mixed case, the EIP-55 checksum case.",
    pattern="^0x[0-9a-fA-F]{40}$",
)

ADDRESS_FORMATS: Final[Mapping[str, AddressFormat]] = MappingProxyType(
    {
        "bitcoin": AddressFormat(
            description="Bitcoin mainnet: a legacy address starting with 1 or 3 (base58, 26 to 34 characters), "
            "or a segwit address starting with bc1q (42 or 62 characters) or bc1p (62), all in one case.",
            pattern=f"^(?:[13]{_BASE58}{{25,33}}"
            f"|bc1q(?:{_BECH32_LOWER}{{38}}|{_BECH32_LOWER}{{58}})|bc1p{_BECH32_LOWER}{{58}}"
            f"|BC1Q(?:{_BECH32_UPPER}{{38}}|{_BECH32_UPPER}{{58}})|BC1P{_BECH32_UPPER}{{58}})$",
        ),
        "ethereum": _EVM,
        "ERC20": _EVM,
        "TRC20": AddressFormat(
            description="TRON: T and 33 base58 characters (34 in all).", pattern=f"^T{_BASE58}{{33}}$"
        ),
    }
)
"""Network → the shape of its addresses (every network of :data:`SUPPORTED` has one)."""

# Longer than any address we accept (bech32 caps at 90); stops a pasted blob before base58 decoding.
_MAX_ADDRESS_LENGTH: Final = 100

_BASE58_ALPHABET: Final = frozenset(base58.BITCOIN_ALPHABET.decode("ascii"))
_BASE58CHECK_LENGTH: Final = 25  # version byte + 20-byte hash + 4-byte checksum
# Leading zero bytes become "1"s, so a P2PKH address can be as short as 26 characters; P2SH is always 34.
_LEGACY_BITCOIN_MIN_LENGTH: Final = 26
_LEGACY_BITCOIN_MAX_LENGTH: Final = 34
_BITCOIN_P2PKH_VERSION: Final = 0x00
_BITCOIN_P2SH_VERSION: Final = 0x05
_TRON_VERSION: Final = 0x41

_BITCOIN_HRP: Final = "bc"
# BIP-173 (bech32) and BIP-350 (bech32m): the polymod residue of a valid string is one of these.
_BECH32_CONSTANT: Final = 1
_BECH32M_CONSTANT: Final = 0x2BC830A3
_SEGWIT_ADDRESS_LENGTHS: Final = frozenset({42, 62})  # bc1q + 20-byte program; bc1q/bc1p + 32-byte

_ETHEREUM_HEX_LENGTH: Final = 40
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
_TRON_ADDRESS_LENGTH: Final = 34


class InvalidAddressError(Exception):
    """The address cannot receive deposits; ``reason`` says why, in words the operator can act on."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnsupportedNetworkError(Exception):
    """The currency, or the network for that currency, is not one the desk handles."""


def default_network(currency: str) -> str:
    """The network a currency is deposited on when the operator does not name one."""
    return _networks_for(currency)[0]


def validate_address(*, currency: str, network: str, address: str) -> str:
    """Return ``address`` normalised for storage, or raise :class:`InvalidAddressError`.

    Surrounding whitespace is ignored; whitespace inside the address is not.
    """
    _require_supported(currency, network)
    candidate = _prepared(address)
    return _VALIDATORS[network](candidate)


def demo_address(*, currency: str, network: str, seed: int) -> str:
    """A valid, deterministic address for demo data and tests; distinct seeds give distinct addresses.

    BTC gives a P2WPKH (bc1q) address, ETH/ERC20 an EIP-55 address, TRC20 a TRON address. The
    payload is a hash, so nobody holds a key for it: never hand one out for a real deposit.
    """
    _require_supported(currency, network)
    label = f"exchange-desk demo address/{currency}/{network}/{seed}"
    payload = hashlib.sha256(label.encode()).digest()[:20]
    if network == "bitcoin":
        return bech32_encode(_BITCOIN_HRP, [0, *_five_bit_groups(payload)])
    if network == "TRC20":
        return base58.b58encode_check(bytes([_TRON_VERSION]) + payload).decode("ascii")
    return _eip55(payload.hex())


def _networks_for(currency: str) -> tuple[str, ...]:
    try:
        return SUPPORTED[currency]
    except KeyError:
        known = ", ".join(SUPPORTED)
        raise UnsupportedNetworkError(
            f"currency {currency!r} is not supported; use one of: {known}"
        ) from None


def _require_supported(currency: str, network: str) -> None:
    networks = _networks_for(currency)
    if network not in networks:
        raise UnsupportedNetworkError(
            f"{currency} is not accepted on network {network!r}; use one of: {', '.join(networks)}"
        )


def _prepared(address: str) -> str:
    candidate = address.strip()
    if not candidate:
        raise InvalidAddressError("address is empty")
    if any(char.isspace() for char in candidate):
        raise InvalidAddressError("address contains whitespace; paste it again as one piece")
    if not candidate.isascii():
        raise InvalidAddressError(
            "address contains non-ASCII characters (often a look-alike letter); type or paste it again"
        )
    if len(candidate) > _MAX_ADDRESS_LENGTH:
        raise InvalidAddressError(f"wrong length: {len(candidate)} characters is longer than any address")
    return candidate


def _validate_bitcoin(address: str) -> str:
    lowered = address.lower()
    if lowered.startswith(("tb1", "bcrt1")) or address[0] in "mn2":
        raise InvalidAddressError(
            "testnet address: deposits need a Bitcoin mainnet address starting with 1, 3 or bc1"
        )
    if lowered.startswith(f"{_BITCOIN_HRP}1"):
        return _validate_segwit(address)
    if address[0] not in "13":
        raise InvalidAddressError("unknown prefix: Bitcoin addresses start with 1, 3 or bc1")
    if not _LEGACY_BITCOIN_MIN_LENGTH <= len(address) <= _LEGACY_BITCOIN_MAX_LENGTH:
        raise InvalidAddressError(
            f"wrong length: Bitcoin addresses starting with 1 or 3 have {_LEGACY_BITCOIN_MIN_LENGTH} to"
            f" {_LEGACY_BITCOIN_MAX_LENGTH} characters, this one has {len(address)}"
        )
    version = _base58check_payload(address)[0]
    if version not in (_BITCOIN_P2PKH_VERSION, _BITCOIN_P2SH_VERSION):
        raise InvalidAddressError(
            f"unknown prefix: version byte 0x{version:02x} is neither Bitcoin P2PKH (0x00) nor P2SH (0x05)"
        )
    return address


def _validate_segwit(address: str) -> str:
    """BIP-173/BIP-350 segwit address; only v0 (bc1q) and v1 taproot (bc1p) can receive deposits."""
    if address not in (address.lower(), address.upper()):
        raise InvalidAddressError(
            "mixed-case address: a bc1 address is either all lower case or all upper case"
        )
    address = address.lower()
    data_part = address[len(_BITCOIN_HRP) + 1 :]
    for char in data_part:
        if char not in BECH32_CHARSET:
            raise InvalidAddressError(f"invalid character {char!r}: bech32 never uses 1, b, i or o after bc1")
    data = [BECH32_CHARSET.index(char) for char in data_part]
    residue = bech32_polymod(bech32_hrp_expand(_BITCOIN_HRP) + data)
    if residue not in (_BECH32_CONSTANT, _BECH32M_CONSTANT):
        # A truncated or padded address fails the checksum too; its length is the more useful hint.
        if len(address) not in _SEGWIT_ADDRESS_LENGTHS:
            raise InvalidAddressError(
                f"wrong length: bc1 addresses have 42 or 62 characters, this one has {len(address)}"
            )
        raise InvalidAddressError("bad checksum: the address has a typo")
    if len(data) <= 6:
        raise InvalidAddressError("wrong length: the address has no witness program")
    witness_version = data[0]
    if witness_version > 1:
        raise InvalidAddressError(
            f"unsupported witness version {witness_version}: only bc1q (v0) and bc1p (taproot) addresses"
            " can receive deposits"
        )
    if witness_version == 0 and residue != _BECH32_CONSTANT:
        raise InvalidAddressError("bad checksum: a bc1q address must use bech32, this one uses bech32m")
    if witness_version == 1 and residue != _BECH32M_CONSTANT:
        raise InvalidAddressError(
            "bad checksum: a bc1p address must use bech32m (BIP-350), this one uses bech32"
        )
    program = convertbits(data[1:-6], 5, 8, False)
    if program is None:
        raise InvalidAddressError("malformed witness program: non-zero or over-long padding")
    allowed_lengths = (20, 32) if witness_version == 0 else (32,)
    if len(program) not in allowed_lengths:
        raise InvalidAddressError(
            f"wrong length: a {'bc1q' if witness_version == 0 else 'bc1p'} witness program has"
            f" {' or '.join(map(str, allowed_lengths))} bytes, this one has {len(program)}"
        )
    return address


def _validate_ethereum(address: str) -> str:
    if not address.startswith("0x"):
        hint = " (this looks like a TRON address)" if address.startswith("T") else ""
        raise InvalidAddressError(f"unknown prefix: Ethereum addresses start with 0x{hint}")
    digits = address[2:]
    if len(digits) != _ETHEREUM_HEX_LENGTH:
        raise InvalidAddressError(
            f"wrong length: expected 0x and {_ETHEREUM_HEX_LENGTH} hex digits, got {len(digits)} digits"
        )
    for char in digits:
        if char not in _HEX_DIGITS:
            raise InvalidAddressError(f"invalid character {char!r}: Ethereum addresses are hexadecimal")
    checksummed = _eip55(digits)
    # Single-case hex carries no checksum (EIP-55 is opt-in); mixed case must be the exact checksum case.
    if digits not in (digits.lower(), digits.upper()) and address != checksummed:
        raise InvalidAddressError("mixed-case address fails EIP-55 checksum: the address has a typo")
    return checksummed


def _validate_tron(address: str) -> str:
    if not address.startswith("T"):
        hint = " (this looks like an Ethereum/ERC20 address)" if address.startswith("0x") else ""
        raise InvalidAddressError(f"unknown prefix: TRON addresses start with T{hint}")
    if len(address) != _TRON_ADDRESS_LENGTH:
        raise InvalidAddressError(
            f"wrong length: TRON addresses have {_TRON_ADDRESS_LENGTH} characters, this one has {len(address)}"
        )
    version = _base58check_payload(address)[0]
    if version != _TRON_VERSION:
        raise InvalidAddressError(
            f"unknown prefix: version byte 0x{version:02x} is not a TRON address (0x41)"
        )
    return address


_VALIDATORS: Final[Mapping[str, Callable[[str], str]]] = MappingProxyType(
    {
        "bitcoin": _validate_bitcoin,
        "ethereum": _validate_ethereum,
        "ERC20": _validate_ethereum,
        "TRC20": _validate_tron,
    }
)


def _base58check_payload(address: str) -> bytes:
    """Version byte and 20-byte hash of a 25-byte base58check address (Bitcoin legacy and TRON)."""
    for char in address:
        if char not in _BASE58_ALPHABET:
            raise InvalidAddressError(f"invalid character {char!r}: base58 never uses 0, O, I or l")
    raw = base58.b58decode(address)
    if len(raw) != _BASE58CHECK_LENGTH:
        raise InvalidAddressError(
            f"wrong length: the address decodes to {len(raw)} bytes instead of {_BASE58CHECK_LENGTH}"
        )
    payload, checksum = raw[:-4], raw[-4:]
    if hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4] != checksum:
        raise InvalidAddressError("bad checksum: the address has a typo")
    return payload


def _eip55(hex_digits: str) -> str:
    """EIP-55 checksum case: a letter is upper case when its nibble of keccak-256 (not SHA3-256) is >= 8."""
    lowered = hex_digits.lower()
    digest = keccak.new(digest_bits=256, data=lowered.encode("ascii")).hexdigest()
    return "0x" + "".join(
        char.upper() if int(nibble, 16) >= 8 else char for char, nibble in zip(lowered, digest, strict=False)
    )


def _five_bit_groups(payload: bytes) -> list[int]:
    """Regroup a 20-byte payload (160 bits, so no padding) into bech32's 32 five-bit values."""
    number = int.from_bytes(payload, "big")
    return [(number >> shift) & 31 for shift in range(155, -1, -5)]


# --- transaction hashes ------------------------------------------------------------------------------------


class InvalidTransactionHashError(Exception):
    """The text is not a transaction hash of the network; ``reason`` says what it should look like."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_HEX_64 = re.compile(r"[0-9a-fA-F]{64}")
_EVM_HASH = re.compile(r"0x[0-9a-fA-F]{64}")
_SOLANA_SIGNATURE = re.compile(f"{_BASE58}{{64,88}}")
_TON_BASE64URL = re.compile(r"[A-Za-z0-9_-]{43}[A-Za-z0-9_=-]")  # 32 bytes: 44 characters, padded or not
_ANY_HASH = re.compile(r"[0-9A-Za-z]{32,128}")

_UTXO_NETWORKS: Final = frozenset(
    {"bitcoin", "btc", "litecoin", "ltc", "bitcoin-cash", "bch", "dogecoin", "doge"}
)
_TRON_NETWORKS: Final = frozenset({"trc20", "tron", "trx"})
_EVM_NETWORKS: Final = frozenset(
    {
        "ethereum", "eth", "erc20", "bep20", "bsc", "polygon", "matic", "arbitrum", "optimism", "base",
        "avalanche", "avax-c", "avaxc",
    }
)  # fmt: skip
_SOLANA_NETWORKS: Final = frozenset({"solana", "sol", "spl"})
_TON_NETWORKS: Final = frozenset({"ton", "jetton"})


def validate_transaction_hash(*, network: str, tx_hash: str) -> str:
    """Return ``tx_hash`` as the desk stores it (hexadecimal in lower case, others unchanged), or raise
    :class:`InvalidTransactionHashError`. Only the shape is checked (a hash carries no checksum):

    - Bitcoin-style UTXO chains (BTC, LTC, BCH, DOGE) and TRON: 64 hexadecimal digits;
    - EVM chains (Ethereum, ERC20, BEP20, Polygon, Arbitrum, ...): ``0x`` and 64 hexadecimal digits;
    - Solana: a base58 signature of 64 to 88 characters;
    - TON: 64 hexadecimal digits, or 44 characters of base64url;
    - any other network: 32 to 128 letters and digits.

    Surrounding whitespace is ignored. ``network`` is matched without regard to case.
    """
    candidate = tx_hash.strip()
    if not candidate:
        raise InvalidTransactionHashError("transaction hash is empty")
    kind = network.strip().lower()
    if kind in _UTXO_NETWORKS or kind in _TRON_NETWORKS:
        if candidate[:2].lower() == "0x" and _HEX_64.fullmatch(candidate[2:]):
            raise InvalidTransactionHashError(
                f"a {network} transaction hash is 64 hexadecimal digits without 0x (this looks like an EVM hash)"
            )
        if not _HEX_64.fullmatch(candidate):
            raise InvalidTransactionHashError(f"a {network} transaction hash is 64 hexadecimal digits")
        return candidate.lower()
    if kind in _EVM_NETWORKS:
        if _HEX_64.fullmatch(candidate):
            raise InvalidTransactionHashError(f"a {network} transaction hash starts with 0x; add it")
        if not _EVM_HASH.fullmatch(candidate.lower()):
            raise InvalidTransactionHashError(f"a {network} transaction hash is 0x and 64 hexadecimal digits")
        return candidate.lower()
    if kind in _SOLANA_NETWORKS:
        if not _SOLANA_SIGNATURE.fullmatch(candidate):
            raise InvalidTransactionHashError(
                f"a {network} transaction signature is 64 to 88 base58 characters (no 0, O, I or l)"
            )
        return candidate
    if kind in _TON_NETWORKS:
        if _HEX_64.fullmatch(candidate):
            return candidate.lower()
        if len(candidate) == 44 and _TON_BASE64URL.fullmatch(candidate):
            return candidate
        raise InvalidTransactionHashError(
            f"a {network} transaction hash is 64 hexadecimal digits or 44 base64url characters"
        )
    if not _ANY_HASH.fullmatch(candidate):
        raise InvalidTransactionHashError(f"a {network} transaction hash is 32 to 128 letters and digits")
    return candidate


def demo_transaction_hash(*, network: str, seed: int | str) -> str:
    """A well-formed, deterministic transaction hash of ``network`` for demo data and tests (distinct seeds
    give distinct hashes); it names no real transaction."""
    digest = hashlib.sha256(f"exchange-desk demo transaction/{network}/{seed}".encode()).digest()
    kind = network.strip().lower()
    if kind in _EVM_NETWORKS:
        return "0x" + digest.hex()
    if kind in _SOLANA_NETWORKS:
        return base58.b58encode(digest + hashlib.sha256(digest).digest()).decode("ascii")
    return digest.hex()
