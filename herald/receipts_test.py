import pytest

from herald.providers.fcm import limits
from herald.receipts import RECEIPT_TOKEN_CHARS, ReceiptError, ReceiptEvent, ReceiptKey
from herald.events import Status

KEY = ReceiptKey(b"server-key", ttl_s=3600)
SPAN = "0123456789abcdef"
NOW = 1_800_000_000


def test_a_token_names_its_delivery_until_it_expires():
    token = KEY.token(SPAN, now=NOW)

    assert len(token) == RECEIPT_TOKEN_CHARS == limits.RECEIPT_TOKEN_CHARS
    assert KEY.verify(token, now=NOW + 3599) == SPAN
    with pytest.raises(ReceiptError, match="expired"):
        KEY.verify(token, now=NOW + 3601)


def _swap_span(token: str) -> str:
    return "fedcba9876543210" + token[len(SPAN):]


def _later_expiry(token: str) -> str:
    span, expires, mac = token.split(".")
    return f"{span}.{int(expires) + 10**6}.{mac}"


@pytest.mark.parametrize("tamper", [
    _swap_span,                                       # another delivery's receipt
    _later_expiry,                                    # a longer life
    lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # a guessed MAC
    lambda token: ReceiptKey(b"another-key", 3600).token(SPAN, now=NOW),
    lambda token: token.replace(".", "-"),
    lambda token: "",
])
def test_a_token_not_made_by_the_key_for_that_delivery_is_forged(tamper):
    with pytest.raises(ReceiptError, match="forged"):
        KEY.verify(tamper(KEY.token(SPAN, now=NOW)), now=NOW)


def test_only_a_span_id_gets_a_token():
    with pytest.raises(ValueError):
        KEY.token("not-a-span")


def test_received_records_delivered_and_opened_records_opened():
    assert (ReceiptEvent.RECEIVED.status, ReceiptEvent.OPENED.status) == (Status.DELIVERED,
                                                                          Status.OPENED)
