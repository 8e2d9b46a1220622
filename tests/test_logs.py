"""Log lines never carry a secret: connection-string keys, SAS signatures, URL passwords."""

from __future__ import annotations

import json
import logging

import pytest

from tilewright.config import Settings
from tilewright.logs import redact, setup_logging


@pytest.mark.parametrize(
    "text, secret, kept",
    [
        (
            "DefaultEndpointsProtocol=http;AccountName=dev;AccountKey=c2VjcmV0a2V5;BlobEndpoint=x",
            "c2VjcmV0a2V5",
            "AccountName=dev",
        ),
        ("https://acct.blob.core.windows.net/c/b.svs?sv=2024&sig=AbC%2Fdef", "AbC%2Fdef", "sv=2024"),
        ("tile cache: Redis at redis://:hunter2@10.0.0.5:6379/0 cannot be reached", "hunter2", "10.0.0.5:6379/0"),
        ("broker amqp://guest:s3cr3t@rabbit:5672// unreachable", "s3cr3t", "amqp://guest:***@rabbit:5672//"),
    ],
)
def test_redact_masks_secrets_and_keeps_the_rest(text, secret, kept):
    masked = redact(text)
    assert secret not in masked and "***" in masked and kept in masked


def test_a_url_without_a_password_is_left_alone():
    for text in ("redis://127.0.0.1:6379/0", "http://user@host/path", "see https://example.org:8080/a:b@c"):
        assert redact(text) == text


@pytest.mark.parametrize("log_format", ["plain", "json"])
def test_log_lines_are_redacted_in_both_formats(log_format, capsys):
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        setup_logging(Settings(log_format=log_format))
        logging.getLogger("tilewright.test").warning("connecting to redis://:hunter2@cache:6379/0")
        err = capsys.readouterr().err.strip().splitlines()[-1]
    finally:
        root.handlers[:], root.level = handlers, level
    assert "hunter2" not in err and "redis://:***@cache:6379/0" in err
    if log_format == "json":
        assert json.loads(err)["level"] == "warning"
