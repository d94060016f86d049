"""The commands on a database that was never migrated say what to do in one line, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


EXAMPLE = "src/callbroker/network/demo/example-network.yaml"


@pytest.mark.parametrize(("argv", "what"), [
    (["calls", "list"], "read calls"), (["billing", "check"], "read the ledger"),
    (["network", "load", EXAMPLE], "read the network"), (["network", "export"], "read the network"),
    # the commands that write say what they were doing, not "read"
    (["calls", "judge", "CA" + "0" * 32, "--not-billable"], "judge calls"),
    (["calls", "close-abandoned"], "close calls"), (["network", "prune-cap-counts"], "delete cap counts"),
])
def test_a_read_command_on_an_unmigrated_database_says_to_migrate(tmp_path, argv, what):
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings"}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "callbroker.cli", *argv], env=env, capture_output=True,
                            text=True, timeout=120, check=False, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 1, result
    assert f"Cannot {what} (" in result.stderr
    assert "Is the database migrated? Run: callbroker migrate" in result.stderr
    # which file: run from another directory, the default ./var is another database
    assert f"the database read is {tmp_path / 'callbroker.sqlite3'}" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("argv", [["calls", "list"], ["partitions", "check"], ["partitions", "ensure"]])
def test_a_command_on_a_database_that_does_not_answer_says_so(tmp_path, argv):
    """Not "run migrate" (that sends the operator the wrong way), and no traceback (partitions printed 78
    lines from the monthly timer)."""
    from tests.services import free_port

    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings",
           "DATABASE_URL": f"postgres://cb:pw@127.0.0.1:{free_port()}/cb"}  # nothing listens there
    result = subprocess.run([sys.executable, "-m", "callbroker.cli", *argv], env=env, capture_output=True,
                            text=True, timeout=120, check=False, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 1, result
    assert "Is the database reachable (DATABASE_URL)?" in result.stderr and "migrate" not in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(("variables", "named"), [
    ({"CALLBROKER_ENV": "prod"}, "CALLBROKER_ENV='prod'"),
    ({"CALLBROKER_LOG_LEVEL": "loud"}, "CALLBROKER_LOG_LEVEL='LOUD'"),
    ({"DATABASE_URL": "postgres://cb:Xy7#kq2@db:5432/cb"}, "DATABASE_URL is malformed"),
    ({"CALLBROKER_ENV": "production", "CALLBROKER_SECRET_KEY": "k" * 50, "TWILIO_AUTH_TOKEN": "real-token",
      "TWILIO_AUTH_TOKENS_EXTRA": "callbroker-demo-auth-token"}, "the demo's public token"),
    # formerly: no scheme stopped `serve` on Django's check of CSRF_TRUSTED_ORIGINS, a name no one set;
    # a query string, a fragment or a bad port can be no base of the carrier URLs
    ({"CALLBROKER_PUBLIC_URL": "callbroker.example.com"}, "CALLBROKER_PUBLIC_URL='callbroker.example.com'"),
    ({"CALLBROKER_PUBLIC_URL": "https://callbroker.example.com?x=1"}, "no query string or fragment"),
    ({"CALLBROKER_PUBLIC_URL": "https://callbroker.example.com:99999"}, "its port is no number"),
    # formerly taken: the parser reads no port after the colon, and every callback URL began "https://host:/"
    ({"CALLBROKER_PUBLIC_URL": "https://callbroker.example.com:"}, "its port is empty"),
    # a path is served under (tests/carriers/test_public_url_path.py); a ";" in it would end it early for Django,
    # not for the carrier, and "//cb" would begin the admin's links "//cb/admin/": another host's
    ({"CALLBROKER_PUBLIC_URL": "https://callbroker.example.com/cb;x"}, "its path may hold no ';'"),
    ({"CALLBROKER_PUBLIC_URL": "https://callbroker.example.com//cb"}, "its path may hold no ';' and no '//'"),
    # formerly shown whole: a password with a "#" (its port then "Xy7"), a value without a scheme
    ({"CALLBROKER_PUBLIC_URL": "https://cb:Xy7#secret@callbroker.example.com"},
     "CALLBROKER_PUBLIC_URL='https://…@callbroker.example.com': a user name or password has no place in it"),
    ({"CALLBROKER_PUBLIC_URL": "cb:Xy7secret@callbroker.example.com"},
     "CALLBROKER_PUBLIC_URL='…@callbroker.example.com': give the scheme"),
    # formerly taken: behind the TLS proxy every webhook was refused (signed over https, seen over http), and
    # the callback URLs came from the request's Host header
    ({"CALLBROKER_ENV": "production", "CALLBROKER_SECRET_KEY": "k" * 50, "TWILIO_AUTH_TOKEN": "real-token",
      "CALLBROKER_PUBLIC_URL": ""},
     "CALLBROKER_PUBLIC_URL must be set when CALLBROKER_ENV=production: the https URL the carrier calls, "
     "e.g. https://callbroker.example.com"),
    # deploy/env.example left unedited: formerly a production server took webhooks signed with its public
    # token, and signed sessions with its public key
    ({"CALLBROKER_ENV": "production", "CALLBROKER_SECRET_KEY": "change-me", "TWILIO_AUTH_TOKEN": "real-token"},
     "CALLBROKER_SECRET_KEY is still deploy/env.example's 'change-me'"),
    ({"CALLBROKER_ENV": "production", "CALLBROKER_SECRET_KEY": "callbroker-embedded-development-key-not-for-production",
      "TWILIO_AUTH_TOKEN": "real-token"}, "CALLBROKER_SECRET_KEY is the development key written in callbroker's source"),
    ({"CALLBROKER_ENV": "production", "CALLBROKER_SECRET_KEY": "k" * 50, "TWILIO_AUTH_TOKEN": "real-token",
      "CALLBROKER_SECRET_KEY_FALLBACKS": "callbroker-embedded-development-key-not-for-production"},
     "CALLBROKER_SECRET_KEY_FALLBACKS holds the development key"),
    ({"CALLBROKER_ENV": "production", "CALLBROKER_SECRET_KEY": "k" * 50, "TWILIO_AUTH_TOKEN": "change-me"},
     "TWILIO_AUTH_TOKEN (or TWILIO_AUTH_TOKENS_EXTRA) is still deploy/env.example's 'change-me'"),
    ({"CALLBROKER_ENV": "production", "CALLBROKER_SECRET_KEY": "k" * 50, "TWILIO_AUTH_TOKEN": "real-token",
      "TWILIO_AUTH_TOKENS_EXTRA": "next-token,change-me"}, "is still deploy/env.example's 'change-me'"),
    # formerly taken: a fallback verifies callback URLs' sig= (and signed values) as the key does
    ({"CALLBROKER_ENV": "production", "CALLBROKER_SECRET_KEY": "k" * 50, "TWILIO_AUTH_TOKEN": "real-token",
      "CALLBROKER_SECRET_KEY_FALLBACKS": "o" * 50 + ", change-me"},
     "CALLBROKER_SECRET_KEY_FALLBACKS holds deploy/env.example's 'change-me'"),
    # formerly taken: every webhook of the account meant was refused 403 (a character lost in the copy); the
    # entry is named by its place and length, never shown (it may be a token)
    ({"CALLBROKER_ENV": "production", "CALLBROKER_SECRET_KEY": "k" * 50, "TWILIO_AUTH_TOKEN": "real-token",
      "CALLBROKER_PUBLIC_URL": "https://callbroker.example.com", "TWILIO_ACCOUNT_SID": "AC" + "a" * 32 + ",ACXy7"},
     "TWILIO_ACCOUNT_SID's entry 2 (5 characters, not shown: it may hold a token) is no account SID"),
    # formerly taken: the server started and failed every webhook on its first live counter (each caller
    # sent to the fallback), /readyz alone saying why
    ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL='127.0.0.1:6379': Redis URL must specify one of the following schemes"),
    ({"REDIS_URL": "redis://:Xy7secret@redis:99999/0"}, "REDIS_URL='redis://…@redis:99999/0': Port out of range"),
    # formerly the parser's words named what it read as the port: the password up to its "#" or "/"; and a
    # value without a scheme was shown whole
    ({"REDIS_URL": "redis://:Xy7#secret@redis:6379/0"}, "REDIS_URL='redis://…@redis:6379/0': percent-encode"),
    ({"REDIS_URL": "redis://cb:Xy7/secret@redis:6379/0"}, "REDIS_URL='redis://…@redis:6379/0': percent-encode"),
    ({"REDIS_URL": ":Xy7secret@redis:6379/0"}, "REDIS_URL='…@redis:6379/0': Redis URL must specify"),
])
def test_a_setting_mistyped_is_one_line_naming_it(tmp_path, variables, named):
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings",
           **variables}
    result = subprocess.run([sys.executable, "-m", "callbroker.cli", "calls", "list"], env=env, capture_output=True,
                            text=True, timeout=120, check=False, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 2
    assert result.stderr.startswith("callbroker: ") and named in result.stderr
    assert "Xy7" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("variables", [{"CALLBROKER_LOG_LEVEL": "info"}, {"CALLBROKER_LOG_FORMAT": "text"},
                                       {"CALLBROKER_ENV": ""}])
def test_a_setting_written_the_usual_ways_is_taken(tmp_path, variables):
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings",
           **variables}
    env.pop("DATABASE_URL", None)
    result = subprocess.run([sys.executable, "-m", "callbroker.cli", "calls", "list"], env=env, capture_output=True,
                            text=True, timeout=120, check=False, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 1 and "Cannot read calls" in result.stderr  # past the settings: not migrated


ADMIN_POST = """
import django
from django.conf import settings
from django.middleware.csrf import CsrfViewMiddleware
from django.test import RequestFactory

django.setup()
post = RequestFactory().post("/admin/login/", HTTP_ORIGIN="https://callbroker.example.com",
                             HTTP_HOST="callbroker.example.com")
print(CsrfViewMiddleware(lambda request: None)._origin_verified(post), settings.SESSION_COOKIE_SECURE,
      settings.CSRF_COOKIE_SECURE)
"""


@pytest.mark.parametrize("public_url", ["https://callbroker.example.com", "HTTPS://Callbroker.Example.COM/"])
def test_a_public_url_in_capitals_takes_the_browsers_admin_posts_and_keeps_the_cookies_secure(tmp_path,
                                                                                             public_url):
    # formerly taken as written: the browser's lower-case Origin refused (every admin login a 403), and the
    # session and CSRF cookies not Secure, the scheme not being "https://" to the letter
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings",
           "CALLBROKER_PUBLIC_URL": public_url, "CALLBROKER_ALLOWED_HOSTS": "callbroker.example.com"}
    result = subprocess.run([sys.executable, "-c", ADMIN_POST], env=env, capture_output=True, text=True,
                            timeout=120, check=True, cwd=Path(__file__).resolve().parents[2])
    assert result.stdout.split() == ["True", "True", "True"]


DEFAULT_PORT = """
import django
from django.conf import settings
from django.middleware.csrf import CsrfViewMiddleware
from django.test import RequestFactory
from twilio.request_validator import RequestValidator

from callbroker.carriers import twilio

django.setup()
scheme = settings.PUBLIC_URL.partition(":")[0].lower()
post = RequestFactory().post("/admin/login/", HTTP_ORIGIN=f"{scheme}://callbroker.example.com",
                             HTTP_HOST="10.0.0.7:8000")  # the node's address: the proxy rewrote Host
params = {"CallSid": "CA" + "1" * 32}
signed = []
for url in ("https://callbroker.example.com", "https://callbroker.example.com:443"):
    signature = RequestValidator(settings.TWILIO_AUTH_TOKEN).compute_signature(url + "/carriers/twilio/fallback", params)
    webhook = RequestFactory().post("/carriers/twilio/fallback", params, HTTP_X_TWILIO_SIGNATURE=signature,
                                    HTTP_HOST="10.0.0.7:8000")
    signed.append(twilio.verify(webhook, params))
print(settings.PUBLIC_URL, *settings.CSRF_TRUSTED_ORIGINS, CsrfViewMiddleware(lambda request: None)._origin_verified(post),
      *signed)
"""


@pytest.mark.parametrize(("public_url", "origin"), [("https://callbroker.example.com:443", "https://callbroker.example.com"),
                                                    ("HTTP://callbroker.example.com:80/", "http://callbroker.example.com")])
def test_a_public_url_with_its_default_port_takes_the_browsers_admin_posts(tmp_path, public_url, origin):
    # formerly taken as written: a browser leaves the default port out of Origin, so with "https://host:443"
    # every admin login was a 403 (CSRF); the carrier's signature, with the port or without, still verifies
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings",
           "CALLBROKER_PUBLIC_URL": public_url, "CALLBROKER_ALLOWED_HOSTS": "10.0.0.7"}
    result = subprocess.run([sys.executable, "-c", DEFAULT_PORT], env=env, capture_output=True, text=True,
                            timeout=120, check=True, cwd=Path(__file__).resolve().parents[2])
    written = public_url[:public_url.index("//") + 2] + "callbroker.example.com"  # the scheme as written
    if written.startswith("https"):
        assert result.stdout.split() == [written, origin, "True", "True", "True"]
    else:  # signed over https: no http base verifies them; the admin's origin is what counts here
        assert result.stdout.split()[:3] == [written, origin, "True"]


def test_help_lists_every_command_sim_too(tmp_path):
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings"}

    def run(*argv: str) -> str:
        result = subprocess.run([sys.executable, "-m", "callbroker.cli", *argv], env=env, capture_output=True,
                                text=True, timeout=120, check=True, cwd=Path(__file__).resolve().parents[2])
        return result.stdout

    listed = run("help")
    assert "    serve\n" in listed and "    network\n" in listed and "    sim\n" in listed
    assert run("help", "sim").startswith("usage: callbroker sim")


def test_ctrl_c_ends_a_command_with_one_line_not_a_traceback(tmp_path):
    """Exit code 130 (interrupted), as shells expect of a program stopped by Ctrl-C."""
    import signal

    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings",
           "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "callbroker.cli", "bench", "--only", "core", "--decisions",
                             "100000000"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parents[2])
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the long part has started
            if "(a) core routing" in line:
                break
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert err.strip() == "callbroker: interrupted" and "Traceback" not in err


def test_a_reader_that_goes_away_ends_a_command_quietly(tmp_path):
    """``callbroker calls list | head -1``: the rest of the output has nowhere to go; no traceback."""
    env = {**os.environ, "CALLBROKER_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "callbroker.settings"}
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([sys.executable, "-m", "callbroker.cli", "help"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before it writes a line
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert proc.returncode == 141 and err == "", err


def test_a_reader_that_goes_away_ends_the_emulator_quietly_too(tmp_path):
    """``callbroker sim`` runs without Django, outside Django's command line: the same quiet end."""
    proc = subprocess.Popen([sys.executable, "-m", "callbroker.cli", "sim", "traffic", "--url", "http://127.0.0.1:9",
                             "--calls", "3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            cwd=Path(__file__).resolve().parents[2])
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert proc.returncode == 141 and "Traceback" not in err, err
