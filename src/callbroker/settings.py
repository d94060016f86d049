"""Django settings, read from the environment through small typed helpers.

Embedded defaults (SQLite under ``CALLBROKER_DATA_DIR``) let ``make run`` work on a fresh machine.
``CALLBROKER_ENV=production`` turns on the checks that refuse to start with unsafe values.
"""

from __future__ import annotations

import base64
import logging
import os
import re
import socket
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured

from callbroker import DEMO_AUTH_TOKEN
from callbroker.core import accounts


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def env_bool(name: str, default: bool = False) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean (use true/false)")


def env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None


#: How long an SQLite connection waits for the write lock when no ``CALLBROKER_DB_LOCK_TIMEOUT_MS`` is set
#: (commands: a long ``network load`` or ``billing`` run in the server's way is waited for, not failed).
SQLITE_BUSY_TIMEOUT_MS = 20_000


def database_from_url(url: str, data_dir: Path, *, lock_timeout_ms: int = 0, statement_timeout_ms: int = 0) -> dict:
    """Translate ``DATABASE_URL`` (sqlite:///path or postgres://user:pw@host:port/db) to Django's dict.

    ``lock_timeout_ms``, ``statement_timeout_ms``: PostgreSQL's ``lock_timeout`` and ``statement_timeout``
    for every session (0: none), given to the web server's processes (``ops/gunicorn_conf.py``). On SQLite
    ``lock_timeout_ms`` is how long a connection waits for the database's write lock (its busy timeout;
    20 s when 0), so that a webhook behind a lock held by another program gives up inside the carrier's 15 s.
    """
    if not url:
        busy_ms = lock_timeout_ms if lock_timeout_ms > 0 else SQLITE_BUSY_TIMEOUT_MS
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(data_dir / "callbroker.sqlite3"),
            "CONN_MAX_AGE": None,  # keep the connection: opening one per request costs more than the request
            # mmap_size=0: SQLite unmaps the whole file whenever another process has committed (every
            # other webhook, with two workers), then maps it again and faults its pages back in; reading
            # the few pages a webhook needs with pread is cheaper (docs/benchmarks.md, 2026-12-06 18:00).
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": busy_ms / 1000,
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                    f"PRAGMA busy_timeout={busy_ms}; PRAGMA cache_size=-32000; PRAGMA mmap_size=0; "
                    "PRAGMA wal_autocheckpoint=4000;"
                ),
            },
        }
    parsed = urlparse(url)
    try:
        parsed.port  # noqa: B018 - raises for what isn't a port, e.g. a password with "#" or "/" not encoded
    except ValueError:
        raise ImproperlyConfigured(
            "DATABASE_URL is malformed: percent-encode the special characters of the user name and password "
            "(e.g. # as %23, / as %2F, ? as %3F, @ as %40)") from None
    if parsed.scheme == "sqlite":
        db = database_from_url("", data_dir, lock_timeout_ms=lock_timeout_ms)
        path = unquote(parsed.path)
        # sqlite:///relative.db -> relative.db ; sqlite:////abs/path.db -> /abs/path.db
        db["NAME"] = path[1:] if path.startswith("/") else path
        return db
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        # A database host that stops answering (down, or the network dropping its packets) must fail a
        # webhook in seconds, so that the call goes on from memory (degraded mode) well inside the
        # carrier's 15 s: libpq's defaults wait for the kernel (minutes to connect, a quarter of an hour on
        # a connection in use). The URL's own values win.
        options = {"connect_timeout": "3", "tcp_user_timeout": "5000"}
        # A database that answers but doesn't get on (a table locked by a migration or by hand, a statement
        # stuck) must fail a webhook in seconds too: connections of the web server give up on a lock after
        # CALLBROKER_DB_LOCK_TIMEOUT_MS and on any statement after CALLBROKER_DB_STATEMENT_TIMEOUT_MS.
        limits = [f"-c {name}={ms}" for name, ms in (("lock_timeout", lock_timeout_ms),
                                                     ("statement_timeout", statement_timeout_ms)) if ms > 0]
        if limits:
            options["options"] = " ".join(limits)
        options.update({k: v[-1] for k, v in parse_qs(parsed.query).items()})
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parsed.path.lstrip("/")),
            "USER": unquote(parsed.username or ""),
            "PASSWORD": unquote(parsed.password or ""),
            "HOST": parsed.hostname or "",
            "PORT": str(parsed.port or ""),
            "CONN_MAX_AGE": 60,
            "OPTIONS": options,
        }
    raise ImproperlyConfigured(f"DATABASE_URL scheme {parsed.scheme!r} is not supported (sqlite or postgres)")


BASE_DIR = Path(__file__).resolve().parent
DATA_DIR = Path(env_str("CALLBROKER_DATA_DIR", "var")).resolve()
_ENV = env_str("CALLBROKER_ENV", "").strip().lower() or "development"
if _ENV not in {"development", "production"}:  # "prod" must not quietly run with the demo's token and key
    raise ImproperlyConfigured(f"CALLBROKER_ENV={_ENV!r}: use production or development")
PRODUCTION = _ENV == "production"

DEBUG = env_bool("CALLBROKER_DEBUG", default=False)

#: What deploy/env.example holds where a secret goes. The file is public: a server started on it unedited
#: would sign sessions with a key, and take webhooks signed with a token, that anyone can read.
TEMPLATE_PLACEHOLDER = "change-me"

#: The key of development (``make run``, the tests), in this public source: production refuses it as it
#: refuses ``change-me`` (copied from a development environment, it would let anyone forge sessions and
#: sign a Telnyx callback URL's ``sig=``).
DEVELOPMENT_SECRET_KEY = "callbroker-embedded-development-key-not-for-production"  # noqa: S105

SECRET_KEY = env_str("CALLBROKER_SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("CALLBROKER_SECRET_KEY must be set when CALLBROKER_ENV=production")
    SECRET_KEY = DEVELOPMENT_SECRET_KEY
if PRODUCTION and SECRET_KEY.strip() == TEMPLATE_PLACEHOLDER:
    raise ImproperlyConfigured("CALLBROKER_SECRET_KEY is still deploy/env.example's 'change-me'; set 50 random "
                               "characters: python3 -c 'import secrets; print(secrets.token_urlsafe(50))'")
if PRODUCTION and SECRET_KEY.strip() == DEVELOPMENT_SECRET_KEY:
    raise ImproperlyConfigured("CALLBROKER_SECRET_KEY is the development key written in callbroker's source, a "
                               "key anyone can read; set 50 random characters: "
                               "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'")

#: Keys ``CALLBROKER_SECRET_KEY`` held before a rotation (comma separated), still taken, not used to sign: the
#: callback URLs of calls in flight (``twilio.callback_query_refused``) and sessions signed with one verify.
SECRET_KEY_FALLBACKS = [k.strip() for k in env_str("CALLBROKER_SECRET_KEY_FALLBACKS", "").split(",") if k.strip()]
if PRODUCTION and DEVELOPMENT_SECRET_KEY in SECRET_KEY_FALLBACKS:
    raise ImproperlyConfigured("CALLBROKER_SECRET_KEY_FALLBACKS holds the development key written in callbroker's "
                               "source, a key anyone can read: remove it")
if PRODUCTION and TEMPLATE_PLACEHOLDER in SECRET_KEY_FALLBACKS:
    # A fallback verifies as the key does: with the public 'change-me' anyone signs a Telnyx callback URL.
    raise ImproperlyConfigured("CALLBROKER_SECRET_KEY_FALLBACKS holds deploy/env.example's 'change-me', a key "
                               "anyone can read: remove it (a fallback is a key this server signed with)")

ALLOWED_HOSTS = [h.strip() for h in env_str("CALLBROKER_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()]


def credentials_hidden(url: str) -> tuple[str, str]:
    """``url`` as a refusal may show it, and what it hid: the text between the scheme's ``//`` (or the
    start, without one) and the last ``@``, a user name and password, read as ``…``. Cut from the text,
    not from a parser's reading of it: a password holding a ``#``, ``/`` or ``?`` not percent-encoded
    ends the parser's host early, and what it then calls the port or the path is the password."""
    head, slashes, rest = url.partition("//")
    if not slashes:
        head, rest = "", url
    credentials, at, after = rest.rpartition("@")
    return (f"{head}{slashes}…@{after}", credentials) if at else (url, "")


#: The port a browser leaves out of ``Origin`` (and a URL needs not name) for each scheme.
DEFAULT_PORTS = {"https": 443, "http": 80}


def public_url_from_env(raw: str) -> str:
    """``CALLBROKER_PUBLIC_URL`` checked: ``http(s)://host[:port][/path]``, a trailing slash dropped, the scheme's
    default port (``:443``, ``:80``) left out.

    Every signature is computed over it and every callback URL in TwiML starts with it, so a value that
    can be no such base must stop the server in one line naming the variable: without a scheme it reached
    Django as ``CSRF_TRUSTED_ORIGINS`` and ``serve`` stopped on a system check about a setting the operator
    never wrote. A user name and password are never echoed. The default port goes because a browser leaves
    it out of ``Origin``: kept, ``https://host:443`` refused every admin login (403); the carrier's
    signature verifies either way (``twilio.verify`` tries the URL with and without it). A path
    (``https://host/cb``) is where a proxy serves callbroker, stripping it: see :data:`PUBLIC_PATH`."""
    value = raw.strip().rstrip("/")
    if not value:
        return ""
    # From the text: a password with a "#", "/" or "?" ends the parser's host early (no "@" in it).
    shown, credentials = credentials_hidden(raw)
    try:
        parts = urlparse(value)
    except ValueError:  # an IPv6 address without its closing bracket
        raise ImproperlyConfigured(f"CALLBROKER_PUBLIC_URL={shown!r}: its host is no host name or address") from None
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problem = "give the scheme and host name the carrier calls, e.g. https://callbroker.example.com"
    elif credentials:
        problem = "a user name or password has no place in it"
    elif parts.netloc.endswith(":"):  # "https://host:": the parser reads no port, as if there were no ":"
        problem = "its port is empty: leave the colon out, or give a number from 1 to 65535"
    elif port == 0:
        problem = "its port is no number from 1 to 65535"
    elif parts.query or parts.fragment or "?" in value or "#" in value:
        problem = "no query string or fragment: scheme, host and port only"
    elif parts.params or "//" in parts.path:  # "https://host/cb;x", "https://host//cb": Django's prefix
        problem = "its path may hold no ';' and no '//'"  # would end early, or name another host ("//cb/admin/")
    elif port == DEFAULT_PORTS[parts.scheme]:
        start = value.index("//") + 2  # the host and port as written, the port cut off
        return value[:start] + parts.netloc.rpartition(":")[0] + value[start + len(parts.netloc):]
    else:
        return value
    raise ImproperlyConfigured(f"CALLBROKER_PUBLIC_URL={shown!r}: {problem}")


#: The external base URL the carrier calls (scheme://host[:port][/path]); used to build callback URLs and
#: to check signatures behind a proxy. Empty: derived from each request.
PUBLIC_URL = public_url_from_env(env_str("CALLBROKER_PUBLIC_URL", ""))
#: The path of ``PUBLIC_URL`` ("/cb"; "" for none): a proxy serves callbroker under it and strips it from the
#: path it passes on (the node's ``PATH_INFO`` is ``/admin/…``, ``/carriers/…``). Django puts it back before
#: every URL it builds (``FORCE_SCRIPT_NAME``): the admin's links, form actions and redirects, the static
#: files; taken as written, they went to ``/admin/`` and ``/static/`` on the proxy, outside callbroker. The
#: carrier URLs are ``PUBLIC_URL`` + the path the node saw (``twilio.public_url``).
PUBLIC_PATH = urlparse(PUBLIC_URL).path if PUBLIC_URL else ""
if PUBLIC_PATH:
    FORCE_SCRIPT_NAME = PUBLIC_PATH
    # The host name is shared: the session and CSRF cookies stay under the path, neither sent to the other
    # sites on it nor overwritten by theirs of the same name (another Django's "sessionid").
    SESSION_COOKIE_PATH = CSRF_COOKIE_PATH = f"{PUBLIC_PATH}/"


def telnyx_public_keys_from_env(raw: str) -> tuple[bytes, ...]:
    """``TELNYX_PUBLIC_KEY`` checked: the Telnyx account's Ed25519 public key as the portal shows it (base64 of
    its 32 bytes), or several, comma separated, while a key is rotated.

    A key that can be no Ed25519 public key would refuse every Telnyx webhook with 403, each caller hearing
    the carrier's error, with nothing saying why but a log line per call: it stops the server at start in
    one line naming the variable instead. A public key is no secret: the value is shown."""
    keys = []
    for number, text in enumerate((part.strip() for part in raw.split(",")), start=1):
        if not text:
            continue
        try:
            key = base64.b64decode(text, validate=True)
        except ValueError:
            problem = "is not base64 (copy the public key as the Telnyx portal shows it)"
        else:
            if len(key) == 32:
                keys.append(key)
                continue
            problem = f"is {len(key)} bytes once decoded; an Ed25519 public key is 32"
        which = f"key {number} ({text[:60]!r})" if "," in raw else repr(text[:60])
        raise ImproperlyConfigured(f"TELNYX_PUBLIC_KEY: {which} {problem}")
    return tuple(keys)


#: Ed25519 public keys (raw 32 bytes) the webhooks of Telnyx TeXML are verified with (``telnyx-signature-ed25519``,
#: ``twilio.signature_refused``); ``TELNYX_PUBLIC_KEY`` in base64, comma separated for a rotation. Empty: every
#: webhook signed by Telnyx is refused (403, the log says to set it).
TELNYX_PUBLIC_KEYS = telnyx_public_keys_from_env(env_str("TELNYX_PUBLIC_KEY", ""))

def account_tokens_from_env(raw: str, *, production: bool) -> dict[str, tuple[str, ...]]:
    """``TWILIO_ACCOUNT_TOKENS`` checked: ``ACCOUNT:TOKEN`` entries, comma separated, each account once; an
    account's tokens during a rotation as ``ACCOUNT:NEW|OLD``.

    Each account's webhooks are then verified with its own tokens only, so that one account's token can't
    sign a webhook naming another (``twilio.signature_refused``). An entry that can be no account and token
    would refuse that account's every call with 403, a log line per call the only sign: it stops the
    server at start in one line naming the variable and the entry (its account; a token is never shown)."""
    by_account: dict[str, tuple[str, ...]] = {}
    for number, entry in enumerate((part.strip() for part in raw.split(",")), start=1):
        if not entry:
            continue
        account, colon, tokens_text = (part.strip() for part in entry.partition(":"))
        tokens = tuple(t.strip() for t in tokens_text.split("|"))
        where = f"TWILIO_ACCOUNT_TOKENS: entry {number}"
        if not colon:
            raise ImproperlyConfigured(f"{where} has no ':' between the account and its token "
                                       "(give ACCOUNT_SID:AUTH_TOKEN, comma separated)")
        if not accounts.is_account_sid(account):
            # Not shown: what stands before the ':' of an entry written the wrong way round is the token.
            raise ImproperlyConfigured(f"{where}: what comes before its ':' ({len(account)} characters, not shown: "
                                       "it may be a token) is no account SID (Twilio: AC and 32 hex characters; "
                                       "SignalWire: the project's ID, a UUID); the account comes first, "
                                       "ACCOUNT_SID:AUTH_TOKEN")
        # As carriers send it, and as TWILIO_ACCOUNT_SID and the webhook's AccountSid are read (core.accounts).
        account = accounts.account_sid(account)
        if not all(tokens):
            raise ImproperlyConfigured(f"{where} ({account}) has an empty token")
        if account in by_account:
            raise ImproperlyConfigured(f"{where} ({account}): the account is named twice; give its tokens "
                                       f"once, as {account}:NEW|OLD during a rotation")
        if production and TEMPLATE_PLACEHOLDER in tokens:
            raise ImproperlyConfigured(f"{where} ({account}): the token is still deploy/env.example's "
                                       "'change-me': anyone could sign webhooks with it; set the account's token")
        if production and DEMO_AUTH_TOKEN in tokens:
            raise ImproperlyConfigured(f"{where} ({account}): the token is the demo's public token; set the "
                                       "account's own when CALLBROKER_ENV=production")
        by_account[account] = tokens
    return by_account


#: Each carrier account's tokens (``{account SID: (token, …)}``), from ``TWILIO_ACCOUNT_TOKENS``
#: (``AC…:token,AC…:token``). Set, a webhook signed as Twilio signs (Twilio, SignalWire) is verified with the
#: tokens of the ``AccountSid`` it names, and refused when that account is none of these; ``TWILIO_AUTH_TOKEN``
#: and ``TWILIO_AUTH_TOKENS_EXTRA`` are then not used (each of their tokens must be one of these). Empty: the
#: flat tokens below verify every webhook, whatever account it names.
TWILIO_ACCOUNT_TOKENS = account_tokens_from_env(env_str("TWILIO_ACCOUNT_TOKENS", ""), production=PRODUCTION)

#: Auth token of the carrier account (Twilio) used to verify X-Twilio-Signature.
#: The embedded default is for the demo only; in production, at least one way to verify webhooks must be
#: set (this, ``TWILIO_ACCOUNT_TOKENS`` or ``TELNYX_PUBLIC_KEY``).
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN", "")
#: Extra tokens (comma separated) accepted too, e.g. during a token rotation or for a SignalWire project.
TWILIO_AUTH_TOKENS_EXTRA = [t.strip() for t in env_str("TWILIO_AUTH_TOKENS_EXTRA", "").split(",")
                            if t.strip()]
if PRODUCTION and not (TWILIO_AUTH_TOKEN or TWILIO_AUTH_TOKENS_EXTRA or TWILIO_ACCOUNT_TOKENS or TELNYX_PUBLIC_KEYS):
    raise ImproperlyConfigured(
        "no way to verify carrier webhooks when CALLBROKER_ENV=production: set TWILIO_AUTH_TOKEN (Twilio, "
        "SignalWire), TWILIO_ACCOUNT_TOKENS (each account's token: AC…:token,AC…:token) or TELNYX_PUBLIC_KEY "
        "(Telnyx TeXML)")
if PRODUCTION and TEMPLATE_PLACEHOLDER in (TWILIO_AUTH_TOKEN.strip(), *TWILIO_AUTH_TOKENS_EXTRA):
    raise ImproperlyConfigured("TWILIO_AUTH_TOKEN (or TWILIO_AUTH_TOKENS_EXTRA) is still deploy/env.example's "
                               "'change-me': anyone could sign webhooks with it; set the carrier account's token")
if PRODUCTION and DEMO_AUTH_TOKEN in (TWILIO_AUTH_TOKEN, *TWILIO_AUTH_TOKENS_EXTRA):
    # It is in the source and printed by ``make run``: anyone could sign webhooks with it.
    raise ImproperlyConfigured("TWILIO_AUTH_TOKEN (or TWILIO_AUTH_TOKENS_EXTRA) is the demo's public token; "
                               "set the carrier account's own when CALLBROKER_ENV=production")
if TWILIO_ACCOUNT_TOKENS:
    # The per-account tokens win; a flat token of no account named there would be quietly unused: every
    # webhook it signs refused. One that is an account's token too (kept while moving over) is harmless.
    _known_tokens = {token for tokens in TWILIO_ACCOUNT_TOKENS.values() for token in tokens}
    _unused = [name for name, tokens in (("TWILIO_AUTH_TOKEN", [TWILIO_AUTH_TOKEN]),
                                         ("TWILIO_AUTH_TOKENS_EXTRA", TWILIO_AUTH_TOKENS_EXTRA))
               if any(token and token not in _known_tokens for token in tokens)]
    if _unused:
        raise ImproperlyConfigured(
            f"{' and '.join(_unused)} {'hold' if len(_unused) > 1 else 'holds'} a token that is no account's of "
            "TWILIO_ACCOUNT_TOKENS, which alone "
            "verifies webhooks signed as Twilio signs when it is set: add the token to its account there "
            f"(AC…:token), or empty {' and '.join(_unused)}")
if not TWILIO_AUTH_TOKEN and not PRODUCTION:
    TWILIO_AUTH_TOKEN = DEMO_AUTH_TOKEN

if PRODUCTION and not PUBLIC_URL:
    # Taken, every webhook behind the TLS proxy was refused (403: the carrier signs the https URL, the node
    # saw http), and the callback URLs in TwiML came from whatever Host header a request carried.
    raise ImproperlyConfigured("CALLBROKER_PUBLIC_URL must be set when CALLBROKER_ENV=production: the https URL "
                               "the carrier calls, e.g. https://callbroker.example.com (webhook signatures are "
                               "checked against it)")

#: The carrier account whose webhooks are taken (their ``AccountSid``), or several, comma separated
#: (subaccounts, a SignalWire project): a webhook of any other account is refused with 403 even when its
#: signature verifies (``twilio.account_accepted``). Empty: ``AccountSid`` is not checked.
TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID", "").strip()

#: What the start logs as a WARNING (``OpsConfig.ready``, once logging is configured: after settings are
#: read): values taken outside production that production refuses, so that development says so too.
START_WARNINGS: list[str] = []


def _pinned_entries(pinned: str) -> list[str]:
    """``TWILIO_ACCOUNT_SID``'s entries as written, blanks left out: an entry's place (1, 2 …) counts these."""
    return [entry.strip() for entry in pinned.split(",") if entry.strip()]


def _no_account(number: int, entry: str) -> str:
    """An entry of ``TWILIO_ACCOUNT_SID`` of no account's shape, named by its place and length, never shown:
    it may be a token pasted there (whole, or as ``AC…:token`` written as in ``TWILIO_ACCOUNT_TOKENS``)."""
    return (f"TWILIO_ACCOUNT_SID's entry {number} ({len(entry)} characters, not shown: it may hold a token) is no "
            f"account SID ({accounts.SHAPES})")


def _joined(problems: list[str]) -> str:
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return "; ".join(problems[:3]) + more


def account_sids_misshapen(pinned: str) -> str:
    """Why an entry of ``TWILIO_ACCOUNT_SID`` (``pinned``) can name no account, or "".

    No webhook's ``AccountSid`` is ever such an entry: a typo (a character lost or added), a token pasted
    instead of the SID or ``AC…`` left from a template would refuse every webhook of the account meant
    with 403, the only sign a log line per call that doesn't name the setting's value. Production refuses to
    start on it; elsewhere it is a WARNING at start (``START_WARNINGS``)."""
    problems = [_no_account(number, entry) for number, entry in enumerate(_pinned_entries(pinned), start=1)
                if not accounts.is_account_sid(entry)]
    if not problems:
        return ""
    return (_joined(problems) + ": no webhook names such an account, and every webhook of the account meant "
            "would be refused (403); copy the SID from the carrier's console, or leave TWILIO_ACCOUNT_SID empty")


_misshapen = account_sids_misshapen(TWILIO_ACCOUNT_SID)
if _misshapen and PRODUCTION:
    raise ImproperlyConfigured(_misshapen)
if _misshapen:
    START_WARNINGS.append(_misshapen)


def accounts_disagreement(pinned: str, tokens: dict[str, tuple[str, ...]]) -> str:
    """Why ``TWILIO_ACCOUNT_SID`` (``pinned``) and ``TWILIO_ACCOUNT_TOKENS`` can't both hold, or "".

    Both name the accounts taken, read alike (``core.accounts``: the same account in another case is the
    same account): they must agree. A Telnyx account (a UUID, verified by its key) may be named in
    ``TWILIO_ACCOUNT_SID`` alone, even one that begins with ``ac``; a Twilio account (``AC…``) there without
    its token could never verify. An entry that begins like one and is no SID (``AC…:token``, written as in
    ``TWILIO_ACCOUNT_TOKENS``) is named as :func:`account_sids_misshapen` names it."""
    entries = _pinned_entries(pinned)
    named = {accounts.account_sid(entry) for entry in entries}
    problems = [f"{sid} is in TWILIO_ACCOUNT_TOKENS but not in TWILIO_ACCOUNT_SID (its webhooks would all be "
                "refused)" for sid in tokens if sid not in named]
    seen: set[str] = set()
    for number, entry in enumerate(entries, start=1):
        sid = accounts.account_sid(entry)
        if sid in tokens or sid in seen:
            continue
        seen.add(sid)
        if accounts.is_twilio_account_sid(sid):
            problems.append(f"{entry} is in TWILIO_ACCOUNT_SID but has no token in TWILIO_ACCOUNT_TOKENS (its "
                            "webhooks would all be refused)")
        elif sid.upper().startswith("AC") and not accounts.is_account_sid(sid):
            problems.append(_no_account(number, entry))
    if not problems:
        return ""
    return ("TWILIO_ACCOUNT_SID and TWILIO_ACCOUNT_TOKENS disagree: " + _joined(problems)
            + " (leave TWILIO_ACCOUNT_SID empty: TWILIO_ACCOUNT_TOKENS checks the account)")


_disagreement = accounts_disagreement(TWILIO_ACCOUNT_SID, TWILIO_ACCOUNT_TOKENS) \
    if TWILIO_ACCOUNT_TOKENS and TWILIO_ACCOUNT_SID else ""
if _disagreement:
    raise ImproperlyConfigured(_disagreement)

#: Seconds between two passes closing the calls whose final status never came (``services.close_abandoned``)
#: in each app process; 0 = never (then run ``callbroker calls close-abandoned`` from a timer). On by
#: default in production (10 minutes), off otherwise (tests, the CLI).
CLOSE_ABANDONED_EVERY_S = env_int("CALLBROKER_CLOSE_ABANDONED_EVERY", 600 if PRODUCTION else 0)

#: Where a caller goes when everything inside fails (E.164); empty = a short spoken apology.
FALLBACK_NUMBER = env_str("CALLBROKER_FALLBACK_NUMBER", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "callbroker.network",
    "callbroker.calls",
    "callbroker.billing",
    "callbroker.carriers",
    "callbroker.ops",
]

MIDDLEWARE = [
    # Before anything that reads the body (CallContextMiddleware reads the form for the CallSid): refuses
    # oversized bodies by their Content-Length and rate-limits strangers (ops/limits.py, docs/security.md).
    "callbroker.ops.limits.RequestLimitsMiddleware",
    # First, so that every log line of a carrier webhook carries its CallSid and every webhook is timed.
    "callbroker.ops.logging.CallContextMiddleware",
    "callbroker.ops.metrics.WebhookMetricsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # the admin's CSS/JS, straight from the app folders
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # The admin's larger bodies are for staff only: right after the user is known, before CSRF or a view
    # reads the body (ops/limits.py).
    "callbroker.ops.limits.StaffBodyMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

#: The middleware of carrier webhooks (``/carriers/…``), which ``callbroker.wsgi`` serves through a second
#: Django handler: no sessions, CSRF, authentication, messages or static files — a carrier has none of
#: them, and skipping them halves the request cycle's cost. The limits, the CallSid log context and the
#: webhook metrics stay, in the same order as above (not the staff body check: a carrier is no user).
CARRIER_MIDDLEWARE = [m for m in MIDDLEWARE
                      if m.startswith("callbroker.") and m != "callbroker.ops.limits.StaffBodyMiddleware"]

ROOT_URLCONF = "callbroker.urls"
WSGI_APPLICATION = "callbroker.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

#: How long the web server waits for a database lock (SQLite's write lock, the writers' queue of
#: ``db.write_lock``, a PostgreSQL row or table lock) before a webhook gives up and goes on from memory
#: (degraded mode); 0: no limit (commands). ``ops/gunicorn_conf.py`` sets 2000 for the web server.
DB_LOCK_TIMEOUT_MS = env_int("CALLBROKER_DB_LOCK_TIMEOUT_MS", 0)
DATABASES = {"default": database_from_url(
    env_str("DATABASE_URL", ""), DATA_DIR,
    lock_timeout_ms=DB_LOCK_TIMEOUT_MS,
    statement_timeout_ms=env_int("CALLBROKER_DB_STATEMENT_TIMEOUT_MS", 0))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

#: Under the path of CALLBROKER_PUBLIC_URL: Django would add it to a relative "static/" only if the first
#: read of the setting came inside a request, and WhiteNoise reads it when the server starts.
STATIC_URL = f"{PUBLIC_PATH}/static/"
#: Where WhiteNoise serves them on the node: the proxy stripped the path before them.
WHITENOISE_STATIC_PREFIX = "/static/"
STATIC_ROOT = DATA_DIR / "static"
#: Serve static files from the installed apps without a collectstatic step (the admin's only).
WHITENOISE_USE_FINDERS = True

# Request bodies (callbroker.ops.limits, docs/security.md#request-bodies). Two sizes: carrier webhooks
# and anyone not logged in get the small one; a logged-in staff member's admin pages the large one (a
# target whose area lists thousands of ZIPs, a buyer with hundreds of targets: what a network file loads).
#: Carrier webhooks, the admin login form and every request that is not a staff member's admin page.
CALLBROKER_MAX_BODY_BYTES = env_int("CALLBROKER_MAX_BODY_BYTES", 64 * 1024)
#: Admin pages (not the login form) of a logged-in, active staff member.
CALLBROKER_ADMIN_MAX_BODY_BYTES = env_int("CALLBROKER_ADMIN_MAX_BODY_BYTES", 4 * 1024 * 1024)
#: Fields of a carrier webhook's form (carriers/form.py); real ones have 15-30.
CALLBROKER_CARRIER_MAX_FIELDS = 200
#: Django's own limits are the largest any request may have: the middleware above refuses a body over
#: the size that applies to it before anything reads it, and the carrier form counts its own fields.
#: A buyer with 200 targets posts about 2,300 fields; 10,000 lets one with ~900 be saved.
DATA_UPLOAD_MAX_MEMORY_SIZE = max(CALLBROKER_MAX_BODY_BYTES, CALLBROKER_ADMIN_MAX_BODY_BYTES)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 10_000

# --------------------------------------------------------------------------------------------------
# Production: live counters in Redis, health, metrics and structured logs (docs/production.md)
# --------------------------------------------------------------------------------------------------


def redis_url_from_env(raw: str) -> str:
    """``REDIS_URL`` read as the Redis client will read it, at start. A value it can't read (no scheme:
    ``127.0.0.1:6379``) let the server start and failed every webhook on its first counter: each caller
    sent to the fallback, the call not recorded at all, ``/readyz`` alone saying why. A password is
    never echoed."""
    value = raw.strip()
    if not value:
        return ""
    from redis.connection import parse_url  # the client's own parser: what it refuses, the server would

    shown, credentials = credentials_hidden(value)
    try:
        options = parse_url(value)
    except ValueError as exc:
        # The parser's words would name what it took for the port: the password up to its "#", "/" or "?".
        problem = (str(exc) if not re.search(r"[#/?]", credentials) else
                   "percent-encode the special characters of the user name and password (# as %23, / as %2F, "
                   "? as %3F)")
    else:
        if "path" in options or options.get("host"):
            return value
        problem = "it names no host"
    raise ImproperlyConfigured(f"REDIS_URL={shown!r}: {problem}; give redis://[:PASSWORD@]HOST:6379/0 "
                               "(rediss:// for TLS, unix:///PATH for a socket)")


#: Redis for the live per-target counters when several app nodes share one database
#: (``redis://[:password@]host:6379/0``, ``rediss://`` for TLS). Empty: no Redis.
REDIS_URL = redis_url_from_env(env_str("REDIS_URL", ""))
#: Where the live counters (concurrency, hourly/daily/monthly caps) are kept: ``auto`` (Redis when
#: ``REDIS_URL`` is set, else the database), ``sql`` (the database) or ``redis``.
COUNTERS_BACKEND = env_str("CALLBROKER_COUNTERS", "auto").strip().lower()
if COUNTERS_BACKEND not in {"auto", "sql", "redis"}:
    raise ImproperlyConfigured(f"CALLBROKER_COUNTERS={COUNTERS_BACKEND!r}: use auto, sql or redis")
if COUNTERS_BACKEND == "redis" and not REDIS_URL:
    raise ImproperlyConfigured("CALLBROKER_COUNTERS=redis needs REDIS_URL")
#: Prefix of every Redis key callbroker writes (installations sharing one Redis use different ones).
REDIS_KEY_PREFIX = env_str("CALLBROKER_REDIS_PREFIX", "cb:")
#: How long one Redis command may take (connect or answer) before it fails, in milliseconds.
REDIS_TIMEOUT_MS = env_int("CALLBROKER_REDIS_TIMEOUT_MS", 500)

#: How long each readiness check (/readyz: database, Redis) may take, in milliseconds.
READYZ_TIMEOUT_MS = env_int("CALLBROKER_READYZ_TIMEOUT_MS", 1000)

#: Bearer token required by /metrics when set (``Authorization: Bearer …``). Empty: open.
METRICS_TOKEN = env_str("CALLBROKER_METRICS_TOKEN", "")
#: Seconds a worker reuses the database-derived metrics (calls by verdict) between scrapes.
METRICS_DB_CACHE_S = env_int("CALLBROKER_METRICS_DB_CACHE_S", 10)

#: ``json`` (one JSON object per line) or ``plain``. Production defaults to JSON.
LOG_FORMAT = env_str("CALLBROKER_LOG_FORMAT", "json" if PRODUCTION else "plain").strip().lower()
LOG_FORMAT = {"text": "plain"}.get(LOG_FORMAT, LOG_FORMAT)
if LOG_FORMAT not in {"json", "plain"}:
    raise ImproperlyConfigured(f"CALLBROKER_LOG_FORMAT={LOG_FORMAT!r}: use json or plain")


def _log_level(default: str) -> str:
    level = env_str("CALLBROKER_LOG_LEVEL", "").strip().upper() or default
    if level not in logging.getLevelNamesMapping():
        raise ImproperlyConfigured(
            f"CALLBROKER_LOG_LEVEL={level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return level
#: This node's name in log lines (default: the host name).
NODE_NAME = env_str("CALLBROKER_NODE", "") or socket.gethostname()

LOGGING_CONFIG = "callbroker.ops.logging.configure"  # dictConfig, and Python warnings through logging too
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"context": {"()": "callbroker.ops.logging.ContextFilter", "node": NODE_NAME}},
    "formatters": {
        "plain": {"()": "callbroker.ops.logging.PlainFormatter"},
        "json": {"()": "callbroker.ops.logging.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["context"]}},
    "root": {"handlers": ["console"], "level": _log_level("WARNING")},
    "loggers": {
        "callbroker": {"level": _log_level("INFO"), "propagate": True},
        # A stranger's bad Host header is answered 400; one line, not a traceback per request.
        "django.security.DisallowedHost": {"level": "CRITICAL", "propagate": False},
    },
}


# --------------------------------------------------------------------------------------------------
# CALLBROKER_RATE_*: rate limits on what a stranger can reach (callbroker.ops.limits, docs/security.md)
# --------------------------------------------------------------------------------------------------
# Token buckets per client address: *_PER_MIN is the refill rate, *_BURST the bucket size; 0 turns a
# limit off. Each worker counts on its own unless REDIS_URL is set (then shared through Redis). Clients
# on loopback are exempt. The body limits are CALLBROKER_MAX_BODY_BYTES and CALLBROKER_ADMIN_MAX_BODY_BYTES
# above.

#: Carrier requests the app refused (bad signature, unreadable body, wrong method …) per client address.
#: Once spent, unsigned requests get 429 unread; a request whose signature verifies always passes.
CALLBROKER_RATE_REFUSED_PER_MIN = env_int("CALLBROKER_RATE_REFUSED_PER_MIN", 30)
CALLBROKER_RATE_REFUSED_BURST = env_int("CALLBROKER_RATE_REFUSED_BURST", 60)
#: Every carrier request per client address. Far above a real carrier's volume.
CALLBROKER_RATE_CARRIER_PER_MIN = env_int("CALLBROKER_RATE_CARRIER_PER_MIN", 6000)
CALLBROKER_RATE_CARRIER_BURST = env_int("CALLBROKER_RATE_CARRIER_BURST", 6000)
#: Failed admin logins per client address (password guessing); once spent, every login POST gets 429.
CALLBROKER_RATE_ADMIN_LOGIN_PER_MIN = env_int("CALLBROKER_RATE_ADMIN_LOGIN_PER_MIN", 5)
CALLBROKER_RATE_ADMIN_LOGIN_BURST = env_int("CALLBROKER_RATE_ADMIN_LOGIN_BURST", 10)
#: Every other request (health, readiness, metrics, admin pages) per client address.
CALLBROKER_RATE_OPEN_PER_MIN = env_int("CALLBROKER_RATE_OPEN_PER_MIN", 1200)
CALLBROKER_RATE_OPEN_BURST = env_int("CALLBROKER_RATE_OPEN_BURST", 600)
#: Reverse proxies (addresses or networks, comma separated) whose X-Forwarded-For names the client.
#: Empty: the client is the TCP peer. Behind a proxy, name it, or every client shares its address.
CALLBROKER_RATE_TRUSTED_PROXIES = [p.strip() for p in env_str("CALLBROKER_RATE_TRUSTED_PROXIES", "").split(",")
                                   if p.strip()]

# --- Admin behind TLS ------------------------------------------------------------------------------
# The admin posts forms: Django checks the Origin header against the public URL's origin. A browser
# sends it in lower case and without a path, and Django compares it as text: taken as written,
# ``HTTPS://Callbroker.example.com`` refused every admin login (403) and left the cookies not Secure.
if PUBLIC_URL:
    _PUBLIC = urlparse(PUBLIC_URL)  # its scheme in lower case
    CSRF_TRUSTED_ORIGINS = [f"{_PUBLIC.scheme}://{_PUBLIC.netloc.lower()}"]
    if _PUBLIC.scheme == "https":
        SESSION_COOKIE_SECURE = True
        CSRF_COOKIE_SECURE = True
