"""Django settings, read from the environment through small typed helpers.

Embedded defaults (SQLite under ``CALLBROKER_DATA_DIR``) let ``make run`` work on a fresh machine.
``CALLBROKER_ENV=production`` turns on the checks that refuse to start with unsafe values.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from django.core.exceptions import ImproperlyConfigured


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


def database_from_url(url: str, data_dir: Path) -> dict:
    """Translate ``DATABASE_URL`` (sqlite:///path or postgres://user:pw@host:port/db) to Django's dict."""
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(data_dir / "callbroker.sqlite3"),
            "CONN_MAX_AGE": None,  # keep the connection: opening one per request costs more than the request
            "OPTIONS": {
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
                "init_command": (
                    "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                    "PRAGMA busy_timeout=20000; PRAGMA cache_size=-32000; PRAGMA mmap_size=268435456; "
                    "PRAGMA wal_autocheckpoint=4000;"
                ),
            },
        }
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        db = database_from_url("", data_dir)
        path = unquote(parsed.path)
        # sqlite:///relative.db -> relative.db ; sqlite:////abs/path.db -> /abs/path.db
        db["NAME"] = path[1:] if path.startswith("/") else path
        return db
    if parsed.scheme in {"postgres", "postgresql", "pgsql"}:
        options = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
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
PRODUCTION = env_str("CALLBROKER_ENV", "development") == "production"

DEBUG = env_bool("CALLBROKER_DEBUG", default=False)
SECRET_KEY = env_str("CALLBROKER_SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("CALLBROKER_SECRET_KEY must be set when CALLBROKER_ENV=production")
    SECRET_KEY = "callbroker-embedded-development-key-not-for-production"  # noqa: S105

ALLOWED_HOSTS = [h.strip() for h in env_str("CALLBROKER_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",") if h.strip()]

#: The external base URL the carrier calls (scheme://host[:port]); used to build callback URLs and
#: to check signatures behind a proxy. Empty: derived from each request.
PUBLIC_URL = env_str("CALLBROKER_PUBLIC_URL", "").rstrip("/")

#: Auth token of the carrier account (Twilio) used to verify X-Twilio-Signature.
#: The embedded default is for the demo only; production refuses to start without a real one.
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN", "")
if not TWILIO_AUTH_TOKEN:
    if PRODUCTION:
        raise ImproperlyConfigured("TWILIO_AUTH_TOKEN must be set when CALLBROKER_ENV=production")
    TWILIO_AUTH_TOKEN = "callbroker-demo-auth-token"  # noqa: S105
#: Extra tokens (comma separated) accepted too, e.g. during a token rotation or for a SignalWire project.
TWILIO_AUTH_TOKENS_EXTRA = [t for t in env_str("TWILIO_AUTH_TOKENS_EXTRA", "").split(",") if t]

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
    "callbroker.carriers",
    "callbroker.ops",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

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

DATABASES = {"default": database_from_url(env_str("DATABASE_URL", ""), DATA_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

#: Carrier webhooks are small; refuse anything larger than this many bytes of form data.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("CALLBROKER_MAX_BODY_BYTES", 64 * 1024)
DATA_UPLOAD_MAX_NUMBER_FIELDS = 200

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("CALLBROKER_LOG_LEVEL", "WARNING")},
    "loggers": {"callbroker": {"level": env_str("CALLBROKER_LOG_LEVEL", "INFO"), "propagate": True}},
}
