"""Fixtures for the admin UI tests: the e2e server (SQLite only), an operator account and headless Chromium.

The browser is Debian's Chromium (``apt-get install chromium chromium-driver``) driven by Selenium through
``/usr/bin/chromedriver``. Selenium Manager never runs: the driver path is given explicitly and
``SE_OFFLINE=1`` forbids any download. Outside CI a missing browser, driver or ``selenium`` skips these
tests; in CI it fails them (``tests.services.missing``).
"""

from __future__ import annotations

import http.client
import mimetypes
import shutil
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from tests import services
from tests.e2e.conftest import server  # noqa: F401  (the e2e server fixture, started the same way)

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
)
WINDOW = (1280, 1000)

OPERATOR = "operator"
OPERATOR_PASSWORD = "ui-test-Operator-pw-1"


@pytest.hookimpl(tryfirst=True)
def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the UI tests on the SQLite server only (the e2e ``server`` fixture is parametrized by backend).

    A ``parametrize`` mark naming ``server`` takes precedence over the fixture's own params; it is added
    before pytest's own hooks read the marks.
    """
    if "server" in metafunc.fixturenames:
        metafunc.definition.add_marker(pytest.mark.parametrize("server", ["sqlite"], indirect=True))


@pytest.fixture(scope="session")
def operator(server) -> tuple[str, str]:  # noqa: F811
    """A superuser on the server's database (idempotent): (username, password)."""
    server.cli("shell", "-c", (
        "from django.contrib.auth import get_user_model\n"
        "User = get_user_model()\n"
        f"user = User.objects.filter(username={OPERATOR!r}).first()\n"
        f"user = user or User(username={OPERATOR!r}, email='operator@example.com')\n"
        f"user.set_password({OPERATOR_PASSWORD!r})\n"
        "user.is_active = user.is_staff = user.is_superuser = True\n"
        "user.save()\n"
    ))
    return OPERATOR, OPERATOR_PASSWORD


# Hop-by-hop headers a proxy does not pass on (RFC 9110 7.6.1); the proxy speaks HTTP/1.0 (a connection a request).
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
               "content-length"}


class _AdminProxy(BaseHTTPRequestHandler):
    """What the production proxy does (docs/deploy.md): ``/static/`` from disk, everything else to gunicorn.

    ``callbroker serve`` does not serve the admin's CSS and JavaScript itself (the proxy does, after
    ``collectstatic``); without it the admin renders unstyled. The files come from Django's static file
    finders, i.e. exactly what ``collectstatic`` would collect.
    """

    upstream: tuple[str, int]

    def _static(self) -> None:
        from django.contrib.staticfiles import finders

        found = finders.find(urlsplit(self.path).path.removeprefix("/static/"))
        if not found:
            self.send_error(404)
            return
        body = Path(found).read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", mimetypes.guess_type(found)[0] or "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "public, max-age=3600")  # as the production proxy: fetched once
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        conn = http.client.HTTPConnection(*self.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
        finally:
            conn.close()
        self.send_response(resp.status, resp.reason)
        for name, value in resp.getheaders():  # a list: every Set-Cookie is kept
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _handle(self) -> None:
        if self.path.startswith("/static/"):
            self._static()
        else:
            self._forward()

    do_GET = do_POST = do_HEAD = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def admin_url(server) -> Iterator[str]:  # noqa: F811
    """Base URL of the admin as operators reach it: the server behind a proxy that serves /static/."""
    upstream = urlsplit(server.base_url)
    handler = type("AdminProxy", (_AdminProxy,), {"upstream": (upstream.hostname, upstream.port)})
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    proxy.daemon_threads = True
    thread = threading.Thread(target=proxy.serve_forever, name="admin-proxy", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{proxy.server_address[1]}"
    proxy.shutdown()
    proxy.server_close()


def _require_browser() -> None:
    if not CHROMIUM.exists():
        services.missing("Chromium (/usr/bin/chromium, apt-get install chromium)")
    if not CHROMEDRIVER.exists():
        services.missing("chromedriver (/usr/bin/chromedriver, apt-get install chromium-driver)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        services.missing("selenium (pip install selenium, a test dependency)")


@pytest.fixture(scope="session", autouse=True)
def _browser_installed() -> None:
    """Skip (fail in CI) before anything is started when the browser, its driver or Selenium is missing."""
    _require_browser()


@pytest.fixture(scope="session")
def chromium() -> Iterator:
    """One headless Chromium for the session (starting one costs seconds); tests get it via ``browser``."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="callbroker-ui-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={WINDOW[0]},{WINDOW[1]}")
    options.add_argument("--lang=en-US")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SE_OFFLINE", "1")  # belt and braces: Selenium Manager must never download anything
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture()
def browser(chromium) -> Iterator:
    """The browser in a clean state: no cookies (logged out), default window size, blank page."""
    chromium.get("about:blank")
    chromium.execute_cdp_cmd("Network.clearBrowserCookies", {})  # every site's (WebDriver's: the page's only)
    chromium.set_window_size(*WINDOW)
    yield chromium
    chromium.get("about:blank")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """When a browser test fails, keep what the browser showed: a screenshot and the HTML, paths in the report."""
    report = yield
    driver = getattr(item, "funcargs", {}).get("browser") or getattr(item, "funcargs", {}).get("signed_in")
    if report.when == "call" and report.failed and driver is not None:
        try:
            out = item.config._tmp_path_factory.mktemp("ui-failure")  # pytest's own tmp dir, like tmp_path
            driver.save_screenshot(str(out / "page.png"))
            (out / "page.html").write_text(driver.page_source, encoding="utf-8")
            report.sections.append(("browser", f"{driver.current_url}\nsaved: {out}/page.png, page.html"))
        except Exception as exc:  # noqa: BLE001  (a diagnostic must never hide the real failure)
            report.sections.append(("browser", f"could not save the page: {exc!r}"))
    return report


_SESSION_COOKIES: list[dict] = []


@pytest.fixture()
def signed_in(browser, admin_url, operator):
    """The browser logged in as the operator. The first use logs in through the login form; later uses
    put that session's cookies back (logging in costs a password hash on the server, ~1 s)."""
    if not _SESSION_COOKIES:
        submit_login(browser, admin_url, *operator)
        assert browser.current_url == admin_url + "/admin/", browser.find_element("tag name", "body").text
        _SESSION_COOKIES.extend(c for c in browser.get_cookies() if c["name"] in ("sessionid", "csrftoken"))
    else:
        browser.get(admin_url + "/static/admin/img/icon-yes.svg")  # cookies can only be set on their site
        for cookie in _SESSION_COOKIES:
            browser.add_cookie({k: cookie[k] for k in ("name", "value", "path") if k in cookie})
    return browser


def wait_until_replaced(browser, element, timeout: float = 15) -> None:
    """Wait until a navigation has replaced ``element``'s page, and the new page has loaded.

    Asked about an element of the page being replaced, chromedriver usually answers "stale element", but
    sometimes "unhandled inspector error: Node with given id does not belong to the document" (seen in a
    full run): the same answer, given another way. The new document may still be loading then, and an
    element found in it could be replaced under the test, so the wait goes on until it has loaded.
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    def replaced(_browser) -> bool:
        try:
            element.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    WebDriverWait(browser, timeout).until(replaced)
    WebDriverWait(browser, timeout).until(lambda b: b.execute_script("return document.readyState") == "complete")


def submit_login(browser, admin_url: str, username: str, password: str) -> None:
    """Open the admin logged out, fill in the login form and submit it (right password or not)."""
    browser.get(admin_url + "/admin/")
    assert "/admin/login/" in browser.current_url, browser.current_url  # logged out: sent to the form
    browser.find_element("css selector", "#id_username").send_keys(username)
    browser.find_element("css selector", "#id_password").send_keys(password)
    button = browser.find_element("css selector", "#login-form [type=submit]")
    button.click()
    wait_until_replaced(browser, button)
