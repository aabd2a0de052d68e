"""Which config values are secrets, and how they are shown: never, not one character.

A key is secret when its name holds PASS, PWD, SECRET, TOKEN, KEY, AUTH, CREDENTIAL or
PRIVATE, in any case (EP_DB_PASS, EP_SMTP_PASSWORD, API_KEY, db_pwd), or has a word part
ending in PW or CRED(S) (EP_DB_PW, SMTPPW, smtpPw, EP_CREDS; not EP_CMS_PWR, CREDIT).
AUTHOR (Elastic Path's authoring environment: EP_AUTHOR_DB_URL) is not AUTH;
AUTHORIZATION is.

Any other value may still carry a secret inside it, whatever its key:

- a URL's user info:       jdbc:mysql://ep:PW@db:3306/x, failover:(tcp://u:PW@h:61616),
                           smtp://me@example.com:PW@mail (the user info runs to the last
                           "@" before the host; a password may hold "@ / , ; ( )" or a space)
- a Go MySQL DSN:          ep:PW@tcp(db:3306)/x, ep:PW@unix(/run/mysqld.sock)/x
- a password parameter:    ...?user=ep&password=PW, ...&pwd=PW, jdbc:sqlserver://h;password=PW,
                           JDBC braces ;password={P;W}, Connector/J's (password=PW); any
                           parameter whose name is a secret key's (pw, db_pw, creds, ...)
- Oracle's user/password:  jdbc:oracle:thin:scott/PW@//db:1521/svc, scott/PW@db
- a PEM private key block.

Only the secret part of such a value is masked: the host stays readable (it is what a
diff between two accounts is about). When unsure where a password ends, more is masked,
never less. Every value cloudops prints goes through shown().
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

# A word part ending in PW or CRED(S): DB_PW, SMTPPW, smtpPw, EP_CREDS (not PWR, CREDIT).
_SECRET_KEY = re.compile(
    r"PASS|PWD|SECRET|TOKEN|KEY|AUTH(?!OR(?!IZ))|CREDENTIAL|PRIVATE|(?:PW|CREDS?)(?![A-Z0-9])", re.IGNORECASE
)
MASK = "****"

# A span of a value that is a secret: (start, end).
_Span = tuple[int, int]

# --- scheme://USER:PASSWORD@host ----------------------------------------------------------
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_LINE_END = re.compile(r"[\r\n]")
# What follows the ":" of host:port, not a password: a port, then a path, or then JDBC
# properties (jdbc:sqlserver://h:1433;user=ep@corp;password=...).
_PORT_NOT_PASSWORD = re.compile(r"[0-9]{1,5}(?:[/?#\\]|;[A-Za-z_][A-Za-z0-9_.-]*=)")


def _url_userinfo(region: str) -> _Span | None:
    """The password inside the user info at the start of ``region`` (what follows a
    scheme://), or None. The user info runs to the last "@" before the query, so that a
    password may hold "@", "/", ",", ";", "(" or ")"; the password starts after the first
    ":" of the user info (a user name may hold "@": smtp://me@example.com:PW@mail)."""
    slash = region.find("/")
    query = len(region)
    if slash >= 0:
        found = re.search(r"[?#]", region[slash:])
        if found:
            query = slash + found.start()
    at = region.rfind("@", 0, query)
    colon = region.find(":", 0, at)
    if at < 0 or colon < 0:
        return None
    if _PORT_NOT_PASSWORD.match(region, colon + 1):
        return None
    return colon + 1, at


def _url_passwords(value: str) -> Iterator[_Span]:
    starts = list(_SCHEME.finditer(value))
    for n, scheme in enumerate(starts):
        # A URL reaches to the next URL of a list, the end of the line, and the ")" that
        # closes a "(" it stands in (failover:(tcp://u:PW@a:1,tcp://u:PW@b:1)).
        end = starts[n + 1].start() if n + 1 < len(starts) else len(value)
        line_end = _LINE_END.search(value, scheme.end(), end)
        end = line_end.start() if line_end else end
        depth = value.count("(", 0, scheme.start()) - value.count(")", 0, scheme.start())
        if depth > 0:
            for i in range(scheme.end(), end):
                depth += {"(": 1, ")": -1}.get(value[i], 0)
                if depth == 0:
                    end = i
                    break
        region = value[scheme.end() : end]
        # Words of a list are not run into (-Da=http://u:PW@h -Db=ops@example.com), unless
        # the first word ends inside the user info (a space in the password).
        word = re.split(r"\s", region, maxsplit=1)[0]
        span = _url_userinfo(word)
        if span is None and len(word) < len(region) and ":" in word and not re.search(r"[/?#@\\]", word):
            span = _url_userinfo(region)
        if span is not None:
            yield scheme.end() + span[0], scheme.end() + span[1]


# --- USER:PASSWORD@tcp(host)/db: the MySQL Go driver's DSN -----------------------------------
_DSN_PROTOCOL = re.compile(r"@[A-Za-z][A-Za-z0-9_-]*\(")


def _dsn_passwords(value: str) -> Iterator[_Span]:
    for word in re.finditer(r"\S+", value):
        text = word.group()
        protocols = list(_DSN_PROTOCOL.finditer(text))
        if not protocols:
            continue
        at = protocols[-1].start()  # the user info runs to the last "@" before the address
        colon = text.find(":", 0, at)
        if colon >= 0 and "://" not in text[:at]:  # scheme://... is a URL's (above)
            yield word.start() + colon + 1, word.start() + at


def _userinfo_passwords(value: str) -> Iterator[_Span]:
    """user:PASSWORD@host, in a URL or a Go DSN."""
    yield from _url_passwords(value)
    yield from _dsn_passwords(value)


# --- ?password=PW  &pwd=PW  ;password=PW  ;password={P;W}  (password=PW)  password=PW -------
# Any parameter whose name is a secret key's. A value in braces (JDBC) runs to its closing
# brace ("}}" is a brace inside); in parentheses (Connector/J's address-equals form) to the
# ")"; otherwise to the next "&", ";" or space.
_PARAMETER = re.compile(
    r"(?:(?P<paren>(?<=\())|^|(?<=[?&;\s]))(?P<name>[A-Za-z0-9_.-]+)\s*=\s*"
    r"(?P<secret>\{(?:[^}]|\}\})*(?:\}|$)|(?(paren)[^)]*|[^&;\s]*))"
)


def _parameter_secrets(value: str) -> Iterator[_Span]:
    for match in _PARAMETER.finditer(value):
        if is_secret_key(match.group("name")):
            yield match.span("secret")


# --- Oracle's user/PASSWORD@host (jdbc:oracle:thin:scott/tiger@//db:1521/svc) ------------------
# The user is a name, not a port (h:8082/search?to=ops@example.com is no user/password).
_SLASH = re.compile(r"(?:^|(?<=[:\s(=]))[A-Za-z_$#][A-Za-z0-9_$#.-]*/(?P<secret>[^\s@/:]+)(?=@)")


def _slash_passwords(value: str) -> Iterator[_Span]:
    for match in _SLASH.finditer(value):
        yield match.span("secret")


_URL_PASSWORD: Callable[[str], Iterator[_Span]] = _userinfo_passwords
_PARAM_SECRET: Callable[[str], Iterator[_Span]] = _parameter_secrets
_SLASH_PASSWORD: Callable[[str], Iterator[_Span]] = _slash_passwords
_PEM_PRIVATE = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL
)
# Applied in this order, each to the value with the secrets found before already masked.
_EMBEDDED = (_URL_PASSWORD, _PARAM_SECRET, _SLASH_PASSWORD)
# A value that only refers to another variable holds no secret of its own.
_REFERENCE_ONLY = re.compile(r"\$\{?[A-Za-z_][A-Za-z0-9_]*(?::?-[^}]*)?\}?")
# Switches and placeholders that a secret-named key may hold in every account alike.
_NOT_A_SECRET = frozenset({"true", "false", "yes", "no", "on", "off", "none", "null", "enabled", "disabled"})


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def mask(value: str | None) -> str | None:
    """That there is a value, and nothing of it: ****. (Whether two accounts' values are
    the same, a diff says in its status, never by showing characters.) Empty stays empty."""
    if value is None:
        return None
    if value == "":
        return ""
    return MASK


def _masked(value: str) -> tuple[str, list[str]]:
    """``value`` with every embedded secret replaced by ****, and those secrets."""
    found = [m.group(0) for m in _PEM_PRIVATE.finditer(value)]
    value = _PEM_PRIVATE.sub(MASK, value)
    for finder in _EMBEDDED:
        spans = sorted({(a, b) for a, b in finder(value) if b > a})
        kept: list[str] = []
        last = 0
        for a, b in spans:
            if a < last:  # overlapping: mask the union
                if b > last:
                    found.append(value[last:b])
                    last = b
                continue
            found.append(value[a:b])
            kept += [value[last:a], MASK]
            last = b
        value = "".join([*kept, value[last:]])
    return value, found


def mask_embedded(value: str) -> str:
    """``value`` with every secret inside it (URL and DSN passwords, password parameters,
    Oracle's user/password, private key blocks) replaced by ****; the rest kept as it is."""
    return _masked(value)[0]


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
    return [s for s in _masked(value)[1] if is_real_secret(s) and s != MASK]
