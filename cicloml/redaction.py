"""Secrets replaced in texts that leave the library: error messages, log lines.

A secret reaches such texts in more forms than its value. A receiver (or a gateway in front of it) that rejects a
webhook request often repeats only the request path, and for Slack the path is the credential
(`/services/T…/B…/<token>`), sometimes percent-encoded; a database driver may name only the password. Every
component that holds a secret passes what it raises or logs through `redact` with the secrets it holds
(`Settings.secrets` lists every configured one).
"""

import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, unquote, urlsplit

from pydantic import SecretStr

REDACTED = "[redacted]"

MIN_SECRET_LENGTH = 8
"""Shorter forms are left in place: an empty or placeholder setting, or a URL's short path (`/`, `/prefect`),
would match ordinary text and turn every message into markers, and is no credential worth hiding."""


def redact(text: str, secrets: Iterable[SecretStr | str | None]) -> str:
    """`text` with each secret replaced by `[redacted]`: its value and, for a URL, its path and password, each
    as written, percent-encoded or percent-decoded. Unset secrets (None) are skipped."""
    forms = {form for secret in secrets if secret is not None for form in _forms(_value(secret))}
    if not forms:
        return text
    # Longest first, so that a whole URL becomes one marker rather than its path's marker inside the rest of it.
    pattern = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
    # Case-insensitive: percent-encoding's hex digits come in either case (%2F, %2f).
    return re.sub(pattern, REDACTED, text, flags=re.IGNORECASE)


def _value(secret: SecretStr | str) -> str:
    return secret.get_secret_value() if isinstance(secret, SecretStr) else secret


def _forms(value: str) -> set[str]:
    parts = {value}
    url = urlsplit(value)
    if url.scheme and url.netloc:
        # Also without its slashes: echoed as `services/T…`, or after a proxy's own prefix, it still matches.
        parts |= {url.path, url.path.strip("/"), url.password or ""}
    encoded = {form for part in parts for form in (quote(part, safe=""), quote(part), quote_plus(part), unquote(part))}
    return {form for form in parts | encoded if len(form) >= MIN_SECRET_LENGTH}
