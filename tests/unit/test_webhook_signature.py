"""Standard Webhooks signatures (services.contracts.webhooks) against the specification's published examples.

The vectors are the ones every reference library of the specification asserts (github.com/standard-webhooks/
standard-webhooks, libraries/python/tests/test_webhooks.py `test_sign_function` and the same values in the Go,
JavaScript, Java, C# and PHP tests): secret, message id, timestamp, payload and the expected `v1` signature.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contracts.webhooks import (
    WebhookSecretError,
    WebhookVerificationError,
    generate_secret,
    parse_secret,
    sign,
    sign_headers,
    split_secrets,
    verify,
)

# --- the specification's published test vector ---------------------------------------------------
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_PAYLOAD = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
# The libraries' "invalid signature" case: the same signature with its last base64 digit changed.
SPEC_WRONG_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="
# The libraries' multi-signature case: foreign entries (another key's v1, an unknown v2) around the valid one.
SPEC_FOREIGN_SIGNATURES = ("v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=")

SPEC_HEADERS = {"webhook-id": SPEC_MSG_ID, "webhook-timestamp": str(SPEC_TIMESTAMP), "webhook-signature": SPEC_SIGNATURE}
OTHER_SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()


def reasons(payload: bytes, headers: dict, secrets: list[str], **kw) -> str:
    with pytest.raises(WebhookVerificationError) as info:
        verify(payload, headers, secrets, **kw)
    return info.value.reason


# --- signing ---------------------------------------------------------------------------------------

def test_sign_reproduces_the_specification_example():
    assert sign(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD) == SPEC_SIGNATURE


def test_sign_headers_carry_id_timestamp_and_signature():
    assert sign_headers([SPEC_SECRET], SPEC_MSG_ID, SPEC_PAYLOAD, timestamp=SPEC_TIMESTAMP) == SPEC_HEADERS


def test_the_signature_is_hmac_sha256_of_id_dot_timestamp_dot_body():
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    mac = hmac.new(key, f"{SPEC_MSG_ID}.{SPEC_TIMESTAMP}.".encode() + SPEC_PAYLOAD, hashlib.sha256).digest()
    assert SPEC_SIGNATURE == "v1," + base64.b64encode(mac).decode()


def test_rotation_signs_with_every_secret_space_separated():
    headers = sign_headers([OTHER_SECRET, SPEC_SECRET], SPEC_MSG_ID, SPEC_PAYLOAD, timestamp=SPEC_TIMESTAMP)
    first, second = headers["webhook-signature"].split(" ")
    assert second == SPEC_SIGNATURE and first == sign(OTHER_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_PAYLOAD)


@pytest.mark.parametrize("msg_id", ["", "msg.1", "msg 1", "ม", "x" * 257])
def test_ids_that_could_be_resplit_or_are_not_printable_ascii_are_refused(msg_id):
    with pytest.raises(ValueError):
        sign(SPEC_SECRET, msg_id, SPEC_TIMESTAMP, SPEC_PAYLOAD)


# --- secrets ---------------------------------------------------------------------------------------

def test_secret_padding_is_optional_as_in_the_reference_libraries():
    # 34 base64 digits need two "=" of padding (the libraries' unpadded-secret case).
    padded, unpadded = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr==", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr"
    assert parse_secret(padded) == parse_secret(unpadded)
    assert sign(padded, SPEC_MSG_ID, 1, b"x") == sign(unpadded, SPEC_MSG_ID, 1, b"x")


@pytest.mark.parametrize("secret", [
    "sekret",                                        # a plain passphrase: refused, not used as raw bytes
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",              # base64 without the prefix
    "whsec_",                                        # empty
    "whsec_not*base64!",                             # not base64
    "whsec_" + base64.b64encode(b"k" * 16).decode(),  # 16 bytes: under the spec's 24
    "whsec_" + base64.b64encode(b"k" * 65).decode(),  # 65 bytes: over the spec's 64
])
def test_malformed_secrets_are_refused_without_echoing_them(secret):
    with pytest.raises(WebhookSecretError) as info:
        parse_secret(secret)
    body = secret.removeprefix("whsec_")
    assert not body or body not in str(info.value)


def test_generated_secrets_are_valid_random_and_32_bytes():
    a, b = generate_secret(), generate_secret()
    assert a != b and a.startswith("whsec_") and len(parse_secret(a)) == 32


def test_split_secrets_accepts_spaces_and_commas():
    assert split_secrets(f" {SPEC_SECRET}, {OTHER_SECRET}\n") == (SPEC_SECRET, OTHER_SECRET)


# --- verification ----------------------------------------------------------------------------------

def test_the_specification_example_verifies_at_its_own_time():
    verify(SPEC_PAYLOAD, SPEC_HEADERS, [SPEC_SECRET], now=SPEC_TIMESTAMP)


def test_header_names_are_case_insensitive():
    verify(SPEC_PAYLOAD, {k.title(): v for k, v in SPEC_HEADERS.items()}, [SPEC_SECRET], now=SPEC_TIMESTAMP)


def test_the_near_miss_signature_of_the_specification_is_refused():
    headers = {**SPEC_HEADERS, "webhook-signature": SPEC_WRONG_SIGNATURE}
    assert reasons(SPEC_PAYLOAD, headers, [SPEC_SECRET], now=SPEC_TIMESTAMP) == "no_matching_signature"


def test_any_of_several_signatures_in_the_header_is_accepted():
    header = " ".join([*SPEC_FOREIGN_SIGNATURES, SPEC_SIGNATURE, SPEC_FOREIGN_SIGNATURES[0]])
    verify(SPEC_PAYLOAD, {**SPEC_HEADERS, "webhook-signature": header}, [SPEC_SECRET], now=SPEC_TIMESTAMP)


def test_only_foreign_signatures_are_refused():
    header = " ".join(SPEC_FOREIGN_SIGNATURES)
    assert reasons(SPEC_PAYLOAD, {**SPEC_HEADERS, "webhook-signature": header}, [SPEC_SECRET],
                   now=SPEC_TIMESTAMP) == "no_matching_signature"


def test_rotation_a_receiver_with_either_secret_verifies():
    # The sender signs with the new and the old secret; receivers mid-rotation know one, the other, or both.
    headers = sign_headers([OTHER_SECRET, SPEC_SECRET], SPEC_MSG_ID, SPEC_PAYLOAD, timestamp=SPEC_TIMESTAMP)
    for known in ([SPEC_SECRET], [OTHER_SECRET], [OTHER_SECRET, SPEC_SECRET]):
        verify(SPEC_PAYLOAD, headers, known, now=SPEC_TIMESTAMP)
    # ... and a receiver that already knows both accepts a sender that signs with the new one only.
    only_new = sign_headers([OTHER_SECRET], SPEC_MSG_ID, SPEC_PAYLOAD, timestamp=SPEC_TIMESTAMP)
    verify(SPEC_PAYLOAD, only_new, [SPEC_SECRET, OTHER_SECRET], now=SPEC_TIMESTAMP)
    assert reasons(SPEC_PAYLOAD, only_new, [SPEC_SECRET], now=SPEC_TIMESTAMP) == "no_matching_signature"


@pytest.mark.parametrize("drift, outcome", [
    (0, None), (300, None), (-300, None),                     # the 5-minute window is inclusive
    (301, "timestamp_too_old"), (-301, "timestamp_too_new"),  # one second past it, in either direction
    (86_400, "timestamp_too_old"), (-86_400, "timestamp_too_new"),
])
def test_tolerance_is_five_minutes_in_both_directions(drift, outcome):
    now = SPEC_TIMESTAMP + drift
    if outcome is None:
        verify(SPEC_PAYLOAD, SPEC_HEADERS, [SPEC_SECRET], now=now)
    else:
        assert reasons(SPEC_PAYLOAD, SPEC_HEADERS, [SPEC_SECRET], now=now) == outcome


def test_tolerance_is_configurable():
    verify(SPEC_PAYLOAD, SPEC_HEADERS, [SPEC_SECRET], now=SPEC_TIMESTAMP + 3000, tolerance=3600)
    assert reasons(SPEC_PAYLOAD, SPEC_HEADERS, [SPEC_SECRET], now=SPEC_TIMESTAMP + 61, tolerance=60) == "timestamp_too_old"


def test_the_real_clock_refuses_the_2021_example():
    assert reasons(SPEC_PAYLOAD, SPEC_HEADERS, [SPEC_SECRET]) == "timestamp_too_old"


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_missing_or_blank_header_is_refused(missing):
    without = {k: v for k, v in SPEC_HEADERS.items() if k != missing}
    assert reasons(SPEC_PAYLOAD, without, [SPEC_SECRET], now=SPEC_TIMESTAMP) == "missing_header"
    assert reasons(SPEC_PAYLOAD, {**SPEC_HEADERS, missing: "  "}, [SPEC_SECRET], now=SPEC_TIMESTAMP) == "missing_header"


@pytest.mark.parametrize("timestamp", ["hello", "1614265330.0", "1e9", "-1614265330", "+1614265330", "๑๖๑๔๒๖๕๓๓๐",
                                       "1_614_265_330", "9" * 13])
def test_a_timestamp_that_is_not_integer_seconds_is_refused(timestamp):
    headers = {**SPEC_HEADERS, "webhook-timestamp": timestamp}
    assert reasons(SPEC_PAYLOAD, headers, [SPEC_SECRET], now=SPEC_TIMESTAMP) == "bad_timestamp"


def test_an_id_with_a_dot_is_refused_so_id_and_timestamp_cannot_be_resplit():
    # "a.1614265330" + "." + ts would otherwise sign the same text as another (id, timestamp) pair.
    headers = {**SPEC_HEADERS, "webhook-id": "msg.1"}
    assert reasons(SPEC_PAYLOAD, headers, [SPEC_SECRET], now=SPEC_TIMESTAMP) == "bad_id"


@pytest.mark.parametrize("change", ["payload", "id", "timestamp"])
def test_every_signed_part_is_covered(change):
    payload, headers, now = SPEC_PAYLOAD, dict(SPEC_HEADERS), SPEC_TIMESTAMP
    if change == "payload":
        payload = b'{"test": 2432232315}'
    elif change == "id":
        headers["webhook-id"] = "msg_p5jXN8AQM9LWM0D4loKWxJeK"
    else:
        headers["webhook-timestamp"] = str(SPEC_TIMESTAMP + 1)
    assert reasons(payload, headers, [SPEC_SECRET], now=now) == "no_matching_signature"


@pytest.mark.parametrize("header", ["v1", "v1,", "v1,not base64!", "v1;g0hM9SsE", ",,,", "v1a,abc v2,abc",
                                    " ".join(["v1,AAAA"] * 10_000)])
def test_garbage_signature_headers_are_refused_cleanly(header):
    assert reasons(SPEC_PAYLOAD, {**SPEC_HEADERS, "webhook-signature": header}, [SPEC_SECRET],
                   now=SPEC_TIMESTAMP) == "no_matching_signature"


def test_a_str_payload_is_taken_as_utf8():
    verify(SPEC_PAYLOAD.decode(), SPEC_HEADERS, [SPEC_SECRET], now=SPEC_TIMESTAMP)


def test_verification_needs_a_valid_secret():
    with pytest.raises(WebhookSecretError):
        verify(SPEC_PAYLOAD, SPEC_HEADERS, [], now=SPEC_TIMESTAMP)
    with pytest.raises(WebhookSecretError):
        verify(SPEC_PAYLOAD, SPEC_HEADERS, ["sekret"], now=SPEC_TIMESTAMP)


@given(payload=st.binary(max_size=512), msg_id=st.from_regex(r"[!-\-/-~]{1,64}", fullmatch=True),
       timestamp=st.integers(min_value=0, max_value=4_000_000_000), flip=st.integers(min_value=0, max_value=10_000))
def test_round_trip_and_any_changed_byte_fails(payload, msg_id, timestamp, flip):
    headers = sign_headers([SPEC_SECRET], msg_id, payload, timestamp=timestamp)
    verify(payload, headers, [SPEC_SECRET], now=timestamp)
    if payload:
        i = flip % len(payload)
        tampered = payload[:i] + bytes([payload[i] ^ 1]) + payload[i + 1:]
        with pytest.raises(WebhookVerificationError):
            verify(tampered, headers, [SPEC_SECRET], now=timestamp)
