"""Redaction: every form in which a secret reaches an error text is replaced, and nothing else is."""

import sys
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from pydantic import SecretStr

from cicloml import bento, stack
from cicloml.redaction import REDACTED, redact
from cicloml.settings import Settings
from tests.conftest import ROOT

PATH = "/services/T0123ABCD/B0456EFGH/aBcDeFgHiJkLmNoPqRsTuVwX"
WEBHOOK = SecretStr(f"https://hooks.slack.com{PATH}")
DATABASE = "postgresql+asyncpg://prefect:s3cret%40pw@db:5432/prefect"


@pytest.mark.parametrize(
    "echo",
    [
        WEBHOOK.get_secret_value(),
        PATH,
        PATH.lstrip("/"),
        quote(PATH, safe=""),
        quote(PATH, safe="").lower(),
        quote(WEBHOOK.get_secret_value(), safe=""),
    ],
    ids=["full URL", "path", "path without its slash", "encoded path", "encoded path, lower-case hex", "encoded URL"],
)
def test_every_form_of_a_webhook_url_is_replaced_inside_a_longer_text(echo):
    text = f"404 no_service: POST {echo} was not found (request id 42)"
    assert redact(text, [WEBHOOK]) == f"404 no_service: POST {REDACTED} was not found (request id 42)"


def test_a_url_is_replaced_as_a_whole_not_around_its_path():
    assert redact(f"POST {WEBHOOK.get_secret_value()}", [WEBHOOK]) == f"POST {REDACTED}"
    assert redact(f"POST {PATH}", [WEBHOOK]) == f"POST {REDACTED}"


def test_plain_strings_and_several_secrets_are_taken():
    text = f"token api-token-123456 at {PATH}"
    assert redact(text, ["api-token-123456", WEBHOOK]) == f"token {REDACTED} at {REDACTED}"


def test_a_database_url_password_is_replaced_alone_encoded_or_decoded():
    text = "auth failed for s3cret%40pw, that is s3cret@pw, in " + DATABASE
    assert redact(text, [DATABASE]) == f"auth failed for {REDACTED}, that is {REDACTED}, in {REDACTED}"


def test_unset_empty_and_short_secrets_leave_the_text_alone():
    text = "a short text: prefect, 1234567, and nothing else"
    assert redact(text, [None, "", SecretStr(""), "a", "1234567", SecretStr("prefect")]) == text
    assert redact(text, []) == text
    # A URL's short path (`/prefect`) is no secret, and would match every mention of Prefect.
    assert redact(text, ["postgresql://db:5432/prefect"]) == text


def test_settings_list_exactly_the_secrets_that_are_set(tmp_path, monkeypatch):
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "bento-key-123456")
    settings = Settings(state_dir=tmp_path, slack_webhook_url=WEBHOOK, api_token=None)
    assert {secret.get_secret_value() for secret in settings.secrets} == {
        WEBHOOK.get_secret_value(),
        "bento-key-123456",
    }


def test_a_failed_bentocloud_deploy_does_not_repeat_the_api_key(tmp_path, monkeypatch):
    fake = tmp_path / "bentoml"
    fake.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        "sys.exit('401: token ' + os.environ['BENTO_CLOUD_API_KEY'] + ' is not valid')\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(bento, "BENTOML", fake)
    monkeypatch.setenv("BENTO_CLOUD_API_KEY", "bento-key-123456")
    with pytest.raises(RuntimeError, match=r"401: token \[redacted\] is not valid") as failure:
        bento.deploy_bento(Settings(state_dir=tmp_path), "churn:v1", ROOT / "bentos" / "deployment.yaml")
    assert "bento-key-123456" not in str(failure.value)


def test_a_failed_prefect_command_does_not_repeat_the_database_url(tmp_path, monkeypatch):
    fake = tmp_path / "prefect"
    fake.write_text(
        f"#!{sys.executable}\nimport os, sys\n"
        "sys.exit('cannot connect to ' + os.environ['CICLO_PREFECT_DATABASE_URL'])\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(stack, "_prefect", lambda: str(fake))
    monkeypatch.setenv("CICLO_PREFECT_DATABASE_URL", DATABASE)
    settings = Settings(state_dir=tmp_path)
    place = stack.Stack(
        project_dir=tmp_path,
        prefect_ui="http://127.0.0.1:1",
        prefect_api="http://127.0.0.1:1/api",
        service="http://127.0.0.1:2",
        work_pools=[],
        started_at=datetime.now(timezone.utc),
    )
    starter = stack._Starter(settings, place, say=lambda _: None)
    with pytest.raises(stack.StackError, match=r"cannot connect to \[redacted\]") as failure:
        starter._prefect("deploy", "--all")
    cli_log = Path(settings.stack_dir / "prefect-cli.log").read_text()
    assert "s3cret" not in str(failure.value) and "s3cret" not in cli_log and REDACTED in cli_log
