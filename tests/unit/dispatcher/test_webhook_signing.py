"""Webhook signatures as Standard Webhooks define them, checked with the standard's own library as
a receiver would, and the example of the standard's specification."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from iopcare.dispatcher.webhooks.policy import (
    ATTEMPT_HEADER,
    ID_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signed_headers,
)
from iopcare.dispatcher.webhooks.secrets import new_signing_secret

# The example of the Standard Webhooks specification (standardwebhooks.com, "Signature scheme").
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

BODY = b'{"type":"iop.alert.notification"}'


def _now() -> float:
    return datetime.now(UTC).timestamp()


def test_the_signature_is_the_specifications_example_and_an_independent_hmac() -> None:
    assert sign(SPEC_SECRET, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE
    key = base64.b64decode(SPEC_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{SPEC_ID}.{SPEC_TIMESTAMP}.".encode() + SPEC_BODY, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(digest).decode() == SPEC_SIGNATURE


def test_the_headers_of_an_attempt_verify_with_the_standards_library() -> None:
    secret = new_signing_secret()
    headers = signed_headers([secret], BODY, "d-1", attempt=2, now=_now())
    assert headers[ID_HEADER] == "d-1" and headers[ATTEMPT_HEADER] == "2"
    assert headers[TIMESTAMP_HEADER].isdigit()
    assert Webhook(secret).verify(BODY, headers) == {"type": "iop.alert.notification"}


def test_a_tampered_body_id_or_timestamp_and_a_wrong_secret_are_refused() -> None:
    secret = new_signing_secret()
    headers = signed_headers([secret], BODY, "d-1", attempt=1, now=_now())
    verifier = Webhook(secret)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(BODY.replace(b"notification", b"notificatioN"), headers)
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(BODY, headers | {ID_HEADER: "d-2"})  # the delivery id is signed too
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        verifier.verify(BODY, headers | {TIMESTAMP_HEADER: str(int(headers[TIMESTAMP_HEADER]) + 1)})
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        Webhook(new_signing_secret()).verify(BODY, headers)


@pytest.mark.parametrize("offset", [-301, -86_400, 301])
def test_a_request_signed_outside_the_five_minute_tolerance_is_refused(offset: int) -> None:
    secret = new_signing_secret()
    replayed = signed_headers([secret], BODY, "d-1", attempt=1, now=_now() + offset)
    with pytest.raises(WebhookVerificationError, match=r"timestamp too (old|new)"):
        Webhook(secret).verify(BODY, replayed)


def test_during_a_rotation_both_secrets_sign_and_either_verifies() -> None:
    new, old = new_signing_secret(), new_signing_secret()
    headers = signed_headers([new, old], BODY, "d-1", attempt=1, now=_now())
    assert len(headers[SIGNATURE_HEADER].split(" ")) == 2
    Webhook(new).verify(BODY, headers)
    Webhook(old).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_signing_secret()).verify(BODY, headers)


def test_a_new_secret_is_32_random_bytes_in_the_standards_form() -> None:
    secret = new_signing_secret()
    assert secret.startswith("whsec_") and len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_signing_secret() != secret
