"""Deposit-address validation against published vectors (BIP-173, BIP-350, EIP-55) and real addresses."""

from __future__ import annotations

import re

import base58
import pytest
from bech32 import CHARSET as BECH32_CHARSET

from coin_addresses import (
    ADDRESS_FORMATS,
    SUPPORTED,
    InvalidAddressError,
    InvalidTransactionHashError,
    UnsupportedNetworkError,
    default_network,
    demo_address,
    demo_transaction_hash,
    validate_address,
    validate_transaction_hash,
)

P2WPKH = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"  # BIP-173
P2WSH = "bc1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3qccfmv3"  # BIP-173
TAPROOT = "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqzk5jj0"  # BIP-350
GENESIS_P2PKH = "1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa"
P2SH = "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy"
EIP55_VECTORS = [
    "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
    "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
    "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
]
USDT_CONTRACT_TRON = "TR7NHqjeKQxGTCi8q8ZY4pL8otSzgjLj6t"


def btc(address: str) -> str:
    return validate_address(currency="BTC", network="bitcoin", address=address)


def eth(address: str) -> str:
    return validate_address(currency="ETH", network="ethereum", address=address)


def trc20(address: str) -> str:
    return validate_address(currency="USDT", network="TRC20", address=address)


def reason_for(currency: str, network: str, address: str) -> str:
    with pytest.raises(InvalidAddressError) as caught:
        validate_address(currency=currency, network=network, address=address)
    assert str(caught.value) == caught.value.reason
    return caught.value.reason


def substituted(address: str, position: int, char: str) -> str:
    return address[:position] + char + address[position + 1 :]


# --- currencies and networks -------------------------------------------------------------------


def test_supported_networks_and_defaults() -> None:
    assert dict(SUPPORTED) == {"BTC": ("bitcoin",), "ETH": ("ethereum",), "USDT": ("TRC20", "ERC20")}
    assert default_network("BTC") == "bitcoin"
    assert default_network("ETH") == "ethereum"
    assert default_network("USDT") == "TRC20"


@pytest.mark.parametrize(
    ("currency", "network"),
    [("ETH", "ERC20"), ("BTC", "ethereum"), ("USDT", "bitcoin"), ("USDT", "trc20"), ("DOGE", "dogecoin")],
)
def test_unsupported_currency_or_network_is_refused(currency: str, network: str) -> None:
    with pytest.raises(UnsupportedNetworkError):
        validate_address(currency=currency, network=network, address=P2WPKH)
    with pytest.raises(UnsupportedNetworkError):
        demo_address(currency=currency, network=network, seed=1)


def test_default_network_of_unknown_currency_is_refused() -> None:
    with pytest.raises(UnsupportedNetworkError, match="DOGE"):
        default_network("DOGE")


def test_unsupported_network_is_not_an_invalid_address() -> None:
    assert not issubclass(UnsupportedNetworkError, InvalidAddressError)
    assert not issubclass(InvalidAddressError, UnsupportedNetworkError)


# --- input hygiene -------------------------------------------------------------------------------


def test_surrounding_whitespace_is_stripped() -> None:
    assert btc(f"  {GENESIS_P2PKH}\n") == GENESIS_P2PKH
    assert eth(f"\t{EIP55_VECTORS[0]} ") == EIP55_VECTORS[0]


@pytest.mark.parametrize(
    "address",
    [
        "1A1zP1eP5QGefi2DMPT fTL5SLmv7DivfNa",
        "bc1qw508d6qejxtdg4y5r3zar\tvary0c5xw7kv8f3t4",
        "1A1zP1eP5QGe\u00a0fi2",
    ],
)
def test_inner_whitespace_is_invalid(address: str) -> None:
    assert "whitespace" in reason_for("BTC", "bitcoin", address)


@pytest.mark.parametrize("address", ["", "   ", "\n"])
def test_empty_address_is_invalid(address: str) -> None:
    assert reason_for("BTC", "bitcoin", address) == "address is empty"


def test_look_alike_non_ascii_letter_is_invalid() -> None:
    cyrillic_a = "\u0430"
    assert "non-ASCII" in reason_for("ETH", "ethereum", EIP55_VECTORS[0].replace("a", cyrillic_a, 1))


def test_absurdly_long_input_is_refused_before_decoding() -> None:
    assert reason_for("BTC", "bitcoin", "1" + "z" * 5000).startswith("wrong length")


# --- Bitcoin: bech32 / bech32m (BIP-173, BIP-350) ---------------------------------------------------


@pytest.mark.parametrize("address", [P2WPKH, P2WSH, TAPROOT])
def test_segwit_vectors_are_valid(address: str) -> None:
    assert btc(address) == address


@pytest.mark.parametrize("address", [P2WPKH, P2WSH, TAPROOT])
def test_all_upper_case_segwit_is_normalised_to_lower(address: str) -> None:
    assert btc(address.upper()) == address


def test_mixed_case_segwit_is_invalid() -> None:
    mixed = P2WPKH[:10] + P2WPKH[10:].upper()
    assert reason_for("BTC", "bitcoin", mixed).startswith("mixed-case")


@pytest.mark.parametrize(
    "address",
    [
        "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vqh2y7hd",  # v1 with bech32
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kemeawh",  # v0 with bech32m
    ],
)
def test_bip350_checksum_kind_must_match_witness_version(address: str) -> None:
    reason = reason_for("BTC", "bitcoin", address)
    assert reason.startswith("bad checksum")
    assert "bech32m" in reason


@pytest.mark.parametrize(
    ("address", "reason_start"),
    [
        # Valid BIP-350 strings, but v2+ and non-32-byte v1 have no spending rules yet: unsafe for deposits.
        ("BC1SW50QGDZ25J", "unsupported witness version 16"),
        ("bc1zw508d6qejxtdg4y5r3zarvaryvaxxpcs", "unsupported witness version 2"),
        (
            "bc1pw508d6qejxtdg4y5r3zarvary0c5xw7kw508d6qejxtdg4y5r3zarvary0c5xw7kt5nd6y",
            "wrong length: a bc1p witness program has 32 bytes, this one has 40",
        ),
        # BIP-350 invalid vectors.
        ("BC1S0XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ54WELL", "unsupported witness version 16"),
        ("BC130XLXVLHEMJA6C4DQV22UAPCTQUPFHLXM9H8Z3K2E72Q4K9HCZ7VQ7ZWS8R", "unsupported witness version 17"),
        ("bc1p38j9r5y49hruaue7wxjce0updqjuyyx0kh56v8s25huc6995vvpql3jow4", "invalid character 'o'"),
        ("bc1pw5dgrnzv", "wrong length: a bc1p witness program has 32 bytes, this one has 1"),
        (
            "bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v8n0nx0muaewav253zgeav",
            "wrong length: a bc1p witness program has 32 bytes, this one has 41",
        ),
        ("BC1QR508D6QEJXTDG4Y5R3ZARVARYV98GJ9P", "wrong length: a bc1q witness program has 20 or 32 bytes"),
        ("bc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7v07qwwzcrf", "malformed witness program"),
        ("bc1gmk9yu", "wrong length: the address has no witness program"),
        ("tc1p0xlxvlhemja6c4dqv22uapctqupfhlxm9h8z3k2e72q4k9hcz7vq5zuyut", "unknown prefix"),
    ],
)
def test_bip350_vectors_rejected_with_reason(address: str, reason_start: str) -> None:
    assert reason_for("BTC", "bitcoin", address).startswith(reason_start)


@pytest.mark.parametrize(
    "address",
    [
        "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7",  # BIP-350 valid testnet P2WSH
        "tb1pqqqqp399et2xygdj5xreqhjjvcmzhxw4aywxecjdzew6hylgvsesf3hn0c",  # BIP-350 valid testnet taproot
        "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn",
        "2MzQwSSnBHWHqSAqtTVQ6v47XtaisrJa1Vc",
    ],
)
def test_testnet_addresses_are_refused(address: str) -> None:
    assert reason_for("BTC", "bitcoin", address).startswith("testnet address")


@pytest.mark.parametrize("address", [P2WPKH, TAPROOT])
def test_every_single_character_substitution_in_segwit_is_a_bad_checksum(address: str) -> None:
    """Bech32 and bech32m detect any single substitution; none may slip through or be misreported."""
    for position in range(3, len(address)):
        for char in BECH32_CHARSET:
            if char != address[position]:
                reason = reason_for("BTC", "bitcoin", substituted(address, position, char))
                assert reason == "bad checksum: the address has a typo", (position, char)


@pytest.mark.parametrize("address", [P2WPKH[:-1], P2WPKH + "q", TAPROOT[:-3]])
def test_truncated_or_extended_segwit_is_wrong_length(address: str) -> None:
    assert reason_for("BTC", "bitcoin", address).startswith("wrong length")


def test_bech32_excluded_letter_is_invalid_character() -> None:
    assert reason_for("BTC", "bitcoin", substituted(P2WPKH, 10, "b")).startswith("invalid character 'b'")


# --- Bitcoin: base58check P2PKH / P2SH ----------------------------------------------------------------


@pytest.mark.parametrize("address", [GENESIS_P2PKH, P2SH, "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2"])
def test_legacy_addresses_are_valid_and_unchanged(address: str) -> None:
    assert btc(address) == address


@pytest.mark.parametrize("address", [substituted(GENESIS_P2PKH, 20, "X"), substituted(P2SH, 33, "z")])
def test_legacy_flipped_character_is_bad_checksum(address: str) -> None:
    assert reason_for("BTC", "bitcoin", address) == "bad checksum: the address has a typo"


@pytest.mark.parametrize("address", [GENESIS_P2PKH + "a", GENESIS_P2PKH[:20], P2SH[:-6]])
def test_legacy_wrong_length(address: str) -> None:
    assert reason_for("BTC", "bitcoin", address).startswith("wrong length")


def test_legacy_base58_excluded_character_is_invalid() -> None:
    assert reason_for("BTC", "bitcoin", substituted(GENESIS_P2PKH, 5, "0")).startswith(
        "invalid character '0'"
    )


@pytest.mark.parametrize(
    "address",
    [
        "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9",  # Litecoin
        "bitcoincash:qpm2qsznhks23z7629mms6s4cwef74vcwvy22gdx6a",
        EIP55_VECTORS[0],
        USDT_CONTRACT_TRON,
    ],
)
def test_other_chains_are_unknown_prefix_for_bitcoin(address: str) -> None:
    assert reason_for("BTC", "bitcoin", address).startswith("unknown prefix")


def test_legacy_address_with_foreign_version_byte_is_unknown_prefix() -> None:
    # Version 0x06 also encodes to a 34-character string starting with "3", with a valid checksum.
    foreign = base58.b58encode_check(bytes([0x06]) + bytes(range(1, 21))).decode()
    assert foreign.startswith("3")
    assert reason_for("BTC", "bitcoin", foreign).startswith("unknown prefix: version byte 0x06")


# --- Ethereum and USDT-ERC20: EIP-55 ------------------------------------------------------------------


@pytest.mark.parametrize("address", EIP55_VECTORS)
@pytest.mark.parametrize(("currency", "network"), [("ETH", "ethereum"), ("USDT", "ERC20")])
def test_eip55_vectors_are_valid(address: str, currency: str, network: str) -> None:
    assert validate_address(currency=currency, network=network, address=address) == address


@pytest.mark.parametrize("address", EIP55_VECTORS)
def test_single_case_hex_is_normalised_to_eip55(address: str) -> None:
    assert eth(address.lower()) == address
    assert eth("0x" + address[2:].upper()) == address


@pytest.mark.parametrize(
    "address",
    [
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
    ],
)
def test_eip55_single_case_vectors_keep_their_case(address: str) -> None:
    """EIP-55 lists addresses whose checksum case happens to be all caps or all lower."""
    assert eth(address) == address
    assert eth("0x" + address[2:].swapcase()) == address


@pytest.mark.parametrize("address", EIP55_VECTORS)
def test_every_case_flip_fails_eip55(address: str) -> None:
    for position, char in enumerate(address[2:], start=2):
        if char.isalpha():
            flipped = substituted(address, position, char.swapcase())
            reason = reason_for("ETH", "ethereum", flipped)
            assert reason.startswith("mixed-case address fails EIP-55 checksum"), position


def test_eth_flipped_digit_in_checksummed_address_fails_eip55() -> None:
    typo = substituted(EIP55_VECTORS[0], 7, "7")  # 0x5aAeb6… → 0x5aAeb7…
    assert reason_for("USDT", "ERC20", typo).startswith("mixed-case address fails EIP-55 checksum")


@pytest.mark.parametrize(
    ("address", "reason_start"),
    [
        (EIP55_VECTORS[0][2:], "unknown prefix"),
        ("0X" + EIP55_VECTORS[0][2:], "unknown prefix"),
        (USDT_CONTRACT_TRON, "unknown prefix: Ethereum addresses start with 0x (this looks like a TRON"),
        (EIP55_VECTORS[0][:-1], "wrong length"),
        (EIP55_VECTORS[0] + "0", "wrong length"),
        (substituted(EIP55_VECTORS[0], 7, "g"), "invalid character 'g'"),
    ],
)
def test_malformed_ethereum_addresses(address: str, reason_start: str) -> None:
    assert reason_for("ETH", "ethereum", address).startswith(reason_start)


# --- USDT-TRC20: TRON base58check ----------------------------------------------------------------------


@pytest.mark.parametrize("address", [USDT_CONTRACT_TRON, "TLa2f6VPqDgRE67v1736s7bJ8Ray5wYjU7"])
def test_tron_addresses_are_valid_and_unchanged(address: str) -> None:
    assert trc20(address) == address


def test_tron_decodes_to_the_usdt_contract_hex() -> None:
    """Pins the fixture itself: the public USDT contract is 41a614f803b6fd780986a42c78ec9c7f77e6ded13c."""
    assert base58.b58decode_check(USDT_CONTRACT_TRON).hex() == "41a614f803b6fd780986a42c78ec9c7f77e6ded13c"


@pytest.mark.parametrize("position", [1, 10, 20, 33])
def test_tron_flipped_character_is_bad_checksum(position: int) -> None:
    original = USDT_CONTRACT_TRON[position]
    replacement = "k" if original != "k" else "m"
    typo = substituted(USDT_CONTRACT_TRON, position, replacement)
    assert reason_for("USDT", "TRC20", typo) == "bad checksum: the address has a typo"


@pytest.mark.parametrize(
    ("address", "reason_start"),
    [
        (EIP55_VECTORS[0], "unknown prefix: TRON addresses start with T (this looks like an Ethereum"),
        ("41a614f803b6fd780986a42c78ec9c7f77e6ded13c", "unknown prefix"),
        (GENESIS_P2PKH, "unknown prefix"),
        (USDT_CONTRACT_TRON[:-1], "wrong length"),
        (USDT_CONTRACT_TRON + "1", "wrong length"),
        (substituted(USDT_CONTRACT_TRON, 12, "l"), "invalid character 'l'"),
    ],
)
def test_malformed_tron_addresses(address: str, reason_start: str) -> None:
    assert reason_for("USDT", "TRC20", address).startswith(reason_start)


def test_tron_address_with_foreign_version_byte_is_unknown_prefix() -> None:
    # Version 0x42 still encodes to 34 characters starting with "T", with a valid checksum.
    foreign = base58.b58encode_check(bytes([0x42]) + bytes(range(1, 21))).decode()
    assert foreign.startswith("T")
    assert len(foreign) == 34
    assert reason_for("USDT", "TRC20", foreign).startswith("unknown prefix: version byte 0x42")


# --- demo addresses ------------------------------------------------------------------------------------

PAIRS = [("BTC", "bitcoin"), ("ETH", "ethereum"), ("USDT", "TRC20"), ("USDT", "ERC20")]


@pytest.mark.parametrize(("currency", "network"), PAIRS)
def test_demo_addresses_are_valid_deterministic_and_distinct(currency: str, network: str) -> None:
    addresses = [demo_address(currency=currency, network=network, seed=seed) for seed in range(-5, 300)]
    assert len(set(addresses)) == len(addresses)
    for address in addresses:
        assert validate_address(currency=currency, network=network, address=address) == address
    assert demo_address(currency=currency, network=network, seed=7) == addresses[12]


def test_demo_address_shapes() -> None:
    bitcoin = demo_address(currency="BTC", network="bitcoin", seed=1)
    assert bitcoin.startswith("bc1q")
    assert len(bitcoin) == 42
    tron = demo_address(currency="USDT", network="TRC20", seed=1)
    assert tron.startswith("T")
    assert len(tron) == 34
    ethereum = demo_address(currency="ETH", network="ethereum", seed=1)
    assert ethereum.startswith("0x")
    assert ethereum != ethereum.lower()  # carries EIP-55 case
    assert ethereum != demo_address(currency="USDT", network="ERC20", seed=1)


# --- address formats (what a form checks before sending) ----------------------------------------------

SHORTEST_P2PKH = base58.b58encode_check(bytes(21)).decode()  # a zero hash: "1" for each leading zero byte
VALID = {
    "bitcoin": [
        P2WPKH,
        P2WSH,
        TAPROOT,
        GENESIS_P2PKH,
        P2SH,
        SHORTEST_P2PKH,
        "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
    ],
    "ethereum": EIP55_VECTORS,
    "ERC20": EIP55_VECTORS,
    "TRC20": [USDT_CONTRACT_TRON],
}
"""Published and real addresses of each network (the test vectors above)."""


def accepted_variants(currency: str, network: str) -> list[str]:
    """Addresses ``validate_address`` accepts for the network: the vectors, their other cases that it accepts
    too, and demo addresses."""
    candidates = [
        variant for address in VALID[network] for variant in (address, address.upper(), address.lower())
    ]
    candidates += [demo_address(currency=currency, network=network, seed=seed) for seed in range(200)]
    accepted = []
    for candidate in candidates:
        try:
            validate_address(currency=currency, network=network, address=candidate)
        except InvalidAddressError:
            continue
        accepted.append(candidate)
    return accepted


def test_every_network_has_an_address_format() -> None:
    assert set(ADDRESS_FORMATS) == {network for networks in SUPPORTED.values() for network in networks}
    for address_format in ADDRESS_FORMATS.values():
        assert address_format.description
        assert address_format.pattern.startswith("^")
        assert address_format.pattern.endswith("$")


@pytest.mark.parametrize(("currency", "network"), PAIRS)
def test_the_pattern_matches_every_address_the_validation_accepts(currency: str, network: str) -> None:
    """A form that checks the pattern never refuses an address the desk would take: the vectors in every case
    the validation accepts, demo addresses, and every single-character change of a vector that still passes
    the validation (a checksum that happens to hold)."""
    pattern = re.compile(ADDRESS_FORMATS[network].pattern)
    accepted = accepted_variants(currency, network)
    assert len(accepted) > len(VALID[network])
    for address in accepted:
        assert pattern.fullmatch(address), address
    alphabet = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    for address in VALID[network]:
        for position in range(len(address)):
            for char in alphabet:
                changed = substituted(address, position, char)
                try:
                    validate_address(currency=currency, network=network, address=changed)
                except InvalidAddressError:
                    continue
                assert pattern.fullmatch(changed), changed


@pytest.mark.parametrize(
    ("network", "address"),
    [
        ("bitcoin", P2WPKH[:-1]),  # wrong length
        ("bitcoin", P2WPKH + "q"),
        ("bitcoin", substituted(P2WPKH, 10, "b")),  # not in bech32's alphabet
        ("bitcoin", P2WPKH[:20] + P2WPKH[20:].upper()),  # mixed case
        ("bitcoin", "tb1qrp33g0q5c5txsp9arysrx4k6zdkfs4nce4xj0gdcccefvpysxf3q0sl5k7"),  # testnet
        ("bitcoin", "mipcBbFg9gMiCh81Kj8tqqdgoZub1ZJRfn"),
        ("bitcoin", "LVg2kJoFNg45Nbpy53h7Fe1wKyeXVRhMH9"),  # Litecoin
        ("bitcoin", substituted(GENESIS_P2PKH, 5, "0")),  # not in base58's alphabet
        ("bitcoin", GENESIS_P2PKH + "a"),
        ("bitcoin", f" {P2WPKH}"),  # a form trims first, as the validation does
        ("ethereum", EIP55_VECTORS[0][2:]),
        ("ethereum", EIP55_VECTORS[0] + "0"),
        ("ethereum", substituted(EIP55_VECTORS[0], 5, "g")),
        ("ERC20", USDT_CONTRACT_TRON),
        ("TRC20", EIP55_VECTORS[0]),
        ("TRC20", USDT_CONTRACT_TRON[:-1]),
        ("TRC20", substituted(USDT_CONTRACT_TRON, 8, "l")),
    ],
)
def test_the_pattern_refuses_a_wrong_shape(network: str, address: str) -> None:
    assert re.fullmatch(ADDRESS_FORMATS[network].pattern, address) is None


# --- transaction hashes ------------------------------------------------------------------------------------

BTC_GENESIS_TX = "4a5e1e4baab89f3a32518a88c31bc87f618f76673e2cc77ab2127b7afdeda33b"
ETH_FIRST_TX = "0x5c504ed432cb51138bcf09aa5e8a410dd4a1e204ef84bfed1be16dfba1b22060"
TRON_TX = "8b63c3b7e34f45b4a2d1f3e9d3c1e5a7b9f0e2d4c6a8b0d2e4f6a8c0e2b4d6f8"
SOLANA_SIGNATURE = "5VERv8NMvzbJMEkV8xnrLkEaWRtSz9CosKDYjCJjBRnbJLgp8uirBgmQpjKhoR4tjF3ZpRzrFmBV6UjKdiSZkQUW"
TON_BASE64URL = "Fl_U9bdV9W5-Ga2y1fkGzCsJvU-JjvKZ9uqA-C4uKhA="


@pytest.mark.parametrize(
    ("network", "tx_hash", "stored"),
    [
        ("bitcoin", BTC_GENESIS_TX, BTC_GENESIS_TX),
        ("bitcoin", f"  {BTC_GENESIS_TX.upper()}\n", BTC_GENESIS_TX),
        ("litecoin", BTC_GENESIS_TX, BTC_GENESIS_TX),
        ("BCH", BTC_GENESIS_TX, BTC_GENESIS_TX),
        ("TRC20", TRON_TX, TRON_TX),
        ("ethereum", ETH_FIRST_TX, ETH_FIRST_TX),
        ("ERC20", ETH_FIRST_TX.upper().replace("0X", "0x"), ETH_FIRST_TX),
        ("BEP20", ETH_FIRST_TX, ETH_FIRST_TX),
        ("Polygon", ETH_FIRST_TX, ETH_FIRST_TX),
        ("arbitrum", ETH_FIRST_TX, ETH_FIRST_TX),
        ("solana", SOLANA_SIGNATURE, SOLANA_SIGNATURE),
        ("TON", TON_BASE64URL, TON_BASE64URL),
        ("TON", TRON_TX.upper(), TRON_TX),
        ("monero-like", "A" * 32, "A" * 32),
    ],
)
def test_transaction_hash_of_each_chain_is_accepted_and_normalised(
    network: str, tx_hash: str, stored: str
) -> None:
    assert validate_transaction_hash(network=network, tx_hash=tx_hash) == stored


@pytest.mark.parametrize(
    ("network", "tx_hash", "reason"),
    [
        ("bitcoin", "", "empty"),
        ("bitcoin", BTC_GENESIS_TX[:-1], "64 hexadecimal digits"),
        ("bitcoin", BTC_GENESIS_TX[:-1] + "g", "64 hexadecimal digits"),
        ("bitcoin", "0x" + BTC_GENESIS_TX, "looks like an EVM hash"),
        ("TRC20", TRON_TX + "00", "64 hexadecimal digits"),
        ("ethereum", ETH_FIRST_TX[2:], "starts with 0x"),
        ("ERC20", ETH_FIRST_TX[:-2], "0x and 64 hexadecimal digits"),
        ("solana", SOLANA_SIGNATURE[:40], "64 to 88 base58"),
        ("solana", SOLANA_SIGNATURE[:-1] + "0", "64 to 88 base58"),
        ("TON", TON_BASE64URL[:-2], "44 base64url"),
        ("TON", TON_BASE64URL.replace("_", "/"), "44 base64url"),
        ("dogecoin", "zz", "64 hexadecimal digits"),
        ("monero-like", "A" * 31, "32 to 128 letters and digits"),
        ("monero-like", "A" * 40 + "-" + "A" * 10, "32 to 128 letters and digits"),
    ],
)
def test_malformed_transaction_hash_is_refused_with_the_chain_format(
    network: str, tx_hash: str, reason: str
) -> None:
    with pytest.raises(InvalidTransactionHashError) as caught:
        validate_transaction_hash(network=network, tx_hash=tx_hash)
    assert reason in caught.value.reason


@pytest.mark.parametrize("network", ["bitcoin", "TRC20", "ERC20", "ethereum", "solana", "TON", "other"])
def test_demo_transaction_hashes_are_valid_and_distinct(network: str) -> None:
    first, second = (demo_transaction_hash(network=network, seed=seed) for seed in (1, 2))
    assert first != second
    assert validate_transaction_hash(network=network, tx_hash=first) == first
