"""Which config values are secrets, and how they are shown: never whole.

A key is secret when its name holds PASS, PWD, SECRET, TOKEN, KEY, AUTH, CREDENTIAL or
PRIVATE, in any case (EP_DB_PASS, EP_SMTP_PASSWORD, API_KEY, db_pwd). AUTHOR (Elastic
Path's authoring environment: EP_AUTHOR_DB_URL) is not AUTH; AUTHORIZATION is.

Any other value may still carry a secret inside it, whatever its key:

- a URL's user info:       jdbc:mysql://ep:PW@db:3306/x, failover:(tcp://u:PW@h:61616)
- a password parameter:    ...?user=ep&password=PW, ...&pwd=PW, jdbc:sqlserver://h;password=PW
- Oracle's user/password:  jdbc:oracle:thin:scott/PW@//db:1521/svc, scott/PW@db
- a PEM private key block.

Only the secret part of such a value is masked: the host stays readable (it is what a
diff between two accounts is about). Every value cloudops prints goes through shown().
"""

from __future__ import annotations

import re

_SECRET_KEY = re.compile(r"PASS|PWD|SECRET|TOKEN|KEY|AUTH(?!OR(?!IZ))|CREDENTIAL|PRIVATE", re.IGNORECASE)
# scheme://user:PASSWORD@host: the password runs to the last "@" before whitespace, ","
# ";" or a parenthesis (a raw "@" or "/" in a password is common; lists of URLs are not
# crossed: failover:(tcp://u:p@a:1,tcp://u:p@b:1)). Masking too much beats too little.
_URL_PASSWORD = re.compile(
    r"(?P<head>[a-z][a-z0-9+.-]*://[^:@/\s?#,;()]*:)(?P<secret>[^\s,;()]*)(?=@)", re.IGNORECASE
)
# ?password=PW  &pwd=PW  ;password=PW (JDBC properties)  password=PW (a bare key=value
# list): any parameter whose name looks like a secret's.
_PARAM_SECRET = re.compile(
    r"(?P<head>(?:^|(?<=[?&;\s]))[A-Za-z0-9_.-]*(?:pass|pwd|secret|token|key|credential|auth(?!or(?!iz)))"
    r"[A-Za-z0-9_.-]*\s*=)(?P<secret>[^&;\s]*)",
    re.IGNORECASE,
)
# Oracle's user/PASSWORD@host (jdbc:oracle:thin:scott/tiger@//db:1521/svc).
_SLASH_PASSWORD = re.compile(r"(?P<head>(?:^|(?<=[:\s(=]))[A-Za-z0-9_$#.-]+/)(?P<secret>[^\s@/:]+)(?=@)")
_PEM_PRIVATE = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL
)
_EMBEDDED = (_URL_PASSWORD, _PARAM_SECRET, _SLASH_PASSWORD)
# A value that only refers to another variable holds no secret of its own.
_REFERENCE_ONLY = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(?::?-[^}]*)?\}?")
# Switches and placeholders that a secret-named key may hold in every account alike.
_NOT_A_SECRET = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null", "enabled", "disabled"})

MASK = "****"


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def mask(value: str | None) -> str | None:
    """Enough to tell two values apart by eye in a diff, never enough to use: the first
    two characters of a long value, nothing of a short one."""
    if value is None:
        return None
    if value == "":
        return ""
    return value[:2] + MASK if len(value) >= 12 else MASK


def mask_embedded(value: str) -> str:
    """``value`` with every secret inside it (URL passwords, password parameters, Oracle's
    user/password, private key blocks) replaced by ****; the rest kept as it is."""
    value = _PEM_PRIVATE.sub(MASK, value)
    for pattern in _EMBEDDED:
        value = pattern.sub(lambda m: m.group("head") + (MASK if m.group("secret") else ""), value)
    return value


def shown(key: str, value: str | None) -> str | None:
    """A value as cloudops may print it, in every output (human, --json, findings)."""
    if value is None:
        return None
    if is_secret_key(key):
        return mask(value)
    return mask_embedded(value)


def is_real_secret(value: str | None) -> bool:
    """Worth comparing between accounts: not empty, not a ${REFERENCE}, not a switch."""
    if not value or not value.strip():
        return False
    stripped = value.strip()
    return not _REFERENCE_ONLY.fullmatch(stripped) and stripped.lower() not in _NOT_A_SECRET


def embedded_secrets(value: str) -> list[str]:
    """The secrets inside a value (they are secrets whatever the key), to compare between
    accounts; never to be printed."""
    found = [m.group(0) for m in _PEM_PRIVATE.finditer(value)]
    rest = _PEM_PRIVATE.sub(MASK, value)
    for pattern in _EMBEDDED:
        found += [m.group("secret") for m in pattern.finditer(rest)]
        rest = pattern.sub(lambda m: m.group("head") + MASK, rest)
    return [s for s in found if is_real_secret(s) and s != MASK]


def url_passwords(value: str) -> list[str]:
    """Kept for callers of the first version: every embedded secret."""
    return embedded_secrets(value)
