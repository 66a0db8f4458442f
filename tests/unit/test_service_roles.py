"""The services' database roles, without a server: the SCRAM verifier against RFC 7677's example
exchange, and the role URLs."""

from __future__ import annotations

import base64
import hashlib
import hmac

from iopcare.store.roles import as_role, scram_verifier

# RFC 7677, section 3: user "user", password "pencil".
SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
AUTH_MESSAGE = (
    b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
)
CLIENT_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
SERVER_SIGNATURE = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_the_verifier_accepts_the_rfc_client_and_signs_as_the_rfc_server() -> None:
    verifier = scram_verifier("pencil", salt=SALT)
    method, rest = verifier.split("$", 1)
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key, server_key = (base64.b64decode(k) for k in keys.split(":"))
    assert (method, iterations, base64.b64decode(salt)) == ("SCRAM-SHA-256", "4096", SALT)
    # What a server does with the stored verifier (RFC 5802, section 3).
    client_signature = hmac.new(stored_key, AUTH_MESSAGE, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(CLIENT_PROOF, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key
    assert hmac.new(server_key, AUTH_MESSAGE, hashlib.sha256).digest() == SERVER_SIGNATURE
    assert scram_verifier("pencil", salt=SALT) == verifier
    assert scram_verifier("pencil") != verifier  # a fresh salt each time


def test_a_role_url_replaces_the_user_and_password_and_keeps_the_rest() -> None:
    url = "postgresql://owner:s3cret@db.example.org:5432/iopcare?sslmode=require"
    assert as_role(url, "api") == "postgresql://iopcare_api@db.example.org:5432/iopcare?sslmode=require"
    assert (
        as_role(url, "processor", "p@ss/word")
        == "postgresql://iopcare_processor:p%40ss%2Fword@db.example.org:5432/iopcare?sslmode=require"
    )
    assert (
        as_role("postgresql://127.0.0.1:5/x", "dispatcher") == "postgresql://iopcare_dispatcher@127.0.0.1:5/x"
    )
