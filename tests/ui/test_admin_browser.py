"""The Django admin in a real headless Chromium, against the real server (the e2e server, SQLite).

An operator logs in with the login form, reads calls placed by the carrier emulator (list, filter,
change page with the routing story, attempts and qualification), records the buyer's outcome, and
gets a field error for an invalid phone number on a target. Everything is done by clicking and typing;
results are checked in the page and, for writes, in the database through ``callbroker calls show``.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from callbroker.sim.emulator import BuyerBehaviour, Carrier
from tests.e2e.conftest import TOKEN
from tests.ui.conftest import submit_login, wait_until_replaced

pytestmark = pytest.mark.e2e

PLUMBING, AFTER_HOURS = "+15125550001", "+15125550002"
PIPES_A = "+15125550101"
AWAKE_LINE = "+15125550112"  # a target no UI test rings: its edit form is the one we break
CALLER_PREFIX = "+1512777"  # every caller of these tests: one search shows exactly our calls
TIMEOUT = 10


# --------------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------------


def wait(browser, condition, timeout: float = TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, timeout).until(condition)


def css(browser, selector: str):
    from selenium.webdriver.common.by import By

    return browser.find_element(By.CSS_SELECTOR, selector)


def css_all(browser, selector: str) -> list:
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, selector)


def text_of(browser, selector: str) -> str:
    return " ".join(css(browser, selector).text.split())


def click_and_wait(browser, element) -> None:
    """Click something that loads a new page and wait until the new page is there, loaded."""
    element.click()
    wait_until_replaced(browser, element, TIMEOUT)


def save_page(browser, path: Path) -> Path:
    """A screenshot of the whole page, beyond the window (Chromium's DevTools protocol)."""
    size = browser.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 12000), "scale": 1}
    shot = browser.execute_cdp_cmd("Page.captureScreenshot",
                                   {"format": "png", "captureBeyondViewport": True, "clip": clip})
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def search_calls(browser, admin_url: str, query: str) -> None:
    browser.get(admin_url + "/admin/calls/call/")
    box = css(browser, "#searchbar")
    box.send_keys(query)
    click_and_wait(browser, css(browser, "#changelist-search [type=submit]"))


def listed_calls(browser) -> dict[str, str]:
    """{CallSid: verdict as shown} of the rows of the calls changelist (the SID is shortened in the
    column; the whole SID is its tooltip)."""
    rows = css_all(browser, "#result_list tbody tr")
    out = {}
    for row in rows:
        sid_cell = row.find_element("css selector", ".field-sid [title]")
        sid = sid_cell.get_attribute("title")
        assert sid.startswith(sid_cell.text.strip().rstrip("…")), (sid, sid_cell.text)
        out[sid] = row.find_element("css selector", ".field-verdict").text.strip()
    return out


#: {CallSid: URL of its change page}, learnt from the list's links (one list load for all the calls).
_change_urls: dict[str, str] = {}


def open_call(browser, admin_url: str, call_sid: str) -> None:
    """The call's change page: the first time by clicking it in the list of our calls, then by URL."""
    if call_sid in _change_urls:
        browser.get(_change_urls[call_sid])
    else:
        search_calls(browser, admin_url, CALLER_PREFIX)
        for link in css_all(browser, "#result_list .field-sid a"):
            _change_urls[link.find_element("css selector", "[title]").get_attribute("title")] = \
                link.get_attribute("href")
        click_and_wait(browser, css(browser, f'#result_list .field-sid a [title="{call_sid}"]'))
    # the CallSid is in the folded "Carrier details" section: read its text even when hidden
    shown = css(browser, ".field-call_sid .readonly").get_attribute("textContent")
    assert " ".join(shown.split()) == call_sid


# --------------------------------------------------------------------------------------------------
# the calls the tests look at, placed once through the emulator
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def calls(server) -> dict[str, str]:
    """Two finished calls: {"billable": CallSid, "after_hours": CallSid}."""
    with Carrier(server.base_url, TOKEN, seed=11) as carrier:
        billable = carrier.place_call(
            PLUMBING, f"{CALLER_PREFIX}0001", params={"FromZip": "78701", "FromState": "TX"},
            buyers={PIPES_A: BuyerBehaviour(answers=True, ring_seconds=4, talk_seconds=120)})
        after_hours = carrier.place_call(AFTER_HOURS, f"{CALLER_PREFIX}0002")
    # What the carrier saw (the verdicts are read from the admin below, the database in the e2e tests).
    assert [d.number for d in billable.dials] == [PIPES_A], billable.transcript()
    assert after_hours.dials == [] and "We are closed right now." in after_hours.said
    return {"billable": billable.call_sid, "after_hours": after_hours.call_sid}


# --------------------------------------------------------------------------------------------------
# tests
# --------------------------------------------------------------------------------------------------


def test_operator_logs_in_with_the_login_form_and_sees_the_sections(admin_url, operator, browser):
    from selenium.webdriver.common.by import By

    submit_login(browser, admin_url, operator[0], "not-the-password")
    assert "/admin/login/" in browser.current_url
    assert "Please enter the correct username and password" in text_of(browser, ".errornote")

    browser.delete_all_cookies()
    submit_login(browser, admin_url, *operator)
    assert browser.current_url == admin_url + "/admin/"
    assert "callbroker admin" in browser.title, browser.title  # the index page, under our site title
    apps = {" ".join(m.find_element(By.CSS_SELECTOR, "caption").get_attribute("textContent").split()): m
            for m in css_all(browser, "#content-main .module")}
    assert {"Calls", "Network"} <= set(apps), sorted(apps)
    models = {a.text.strip() for a in css_all(browser, "#content-main .module th[scope=row] a")}
    for name in ("Calls", "Call attempts", "Campaigns", "Buyers", "Targets", "Publishers", "Tracking numbers"):
        assert name in models, sorted(models)
    assert "Calls" in apps["Calls"].text and "Targets" in apps["Network"].text


def test_calls_list_shows_verdicts_and_filters_by_verdict(admin_url, signed_in, calls, tmp_path):
    from selenium.webdriver.common.by import By

    browser = signed_in
    search_calls(browser, admin_url, CALLER_PREFIX)
    assert listed_calls(browser) == {calls["billable"]: "Billable", calls["after_hours"]: "Not billable"}
    save_page(browser, tmp_path / "calls-list.png")

    verdict_filter = browser.find_element(
        By.XPATH, "//*[@id='changelist-filter']//details[@data-filter-title='verdict']//a[normalize-space()='Billable']")
    click_and_wait(browser, verdict_filter)
    assert "verdict__exact=billable" in browser.current_url
    assert listed_calls(browser) == {calls["billable"]: "Billable"}  # the search is kept, one row left
    assert css(browser, "#searchbar").get_attribute("value") == CALLER_PREFIX


def test_billable_call_page_shows_ring_list_attempts_and_qualification(admin_url, signed_in, calls):
    browser = signed_in
    open_call(browser, admin_url, calls["billable"])

    routing = text_of(browser, ".field-routing .readonly")
    assert "ZIP 78701 (carrier)" in routing
    ring = [" ".join(li.text.split()) for li in css_all(browser, ".field-routing .readonly ol li")]
    assert [item.split(" #")[0] for item in ring] == [
        "Austin Pipes / Line A", "Austin Pipes / Line B", "Austin Pipes / Line C"], ring

    attempts = css_all(browser, ".inline-group tbody tr.has_original, .inline-group tbody tr.form-row")
    attempts = [" ".join(row.text.split()) for row in attempts if row.text.strip()]
    assert len(attempts) == 1, attempts
    assert PIPES_A in attempts[0] and "Connected" in attempts[0] and "Line A" in attempts[0]

    assert text_of(browser, ".field-verdict .readonly") == "Billable"
    assert text_of(browser, ".field-reason_list .readonly") == "—"
    assert text_of(browser, ".field-revenue_text .readonly") == "$40.00"
    assert text_of(browser, ".field-payout_text .readonly") == "$10.00"
    assert text_of(browser, ".field-routed_summary .readonly") == "Austin Pipes / Line A"


def test_after_hours_call_page_says_in_words_why_nobody_was_rung(admin_url, signed_in, calls):
    browser = signed_in
    open_call(browser, admin_url, calls["after_hours"])

    routing = text_of(browser, ".field-routing .readonly")
    assert "Ring list empty: no target could take the call." in routing
    excluded = css_all(browser, ".field-routing .readonly ul li")
    assert len(excluded) == 1
    item = " ".join(excluded[0].text.split())
    assert item == "Night Owl HVAC / Never open — closed", item  # the label; the code only if it differs
    assert "closed message played: We are closed right now." in routing  # the fallback the caller got

    attempts = [row for row in css_all(browser, ".inline-group tbody tr.has_original") if row.text.strip()]
    assert attempts == []
    assert "No attempts: the call was not routed to any buyer." in text_of(browser, ".inline-group")
    assert text_of(browser, ".field-verdict .readonly") == "Not billable"
    assert "never connected to a buyer" in text_of(browser, ".field-reason_list .readonly")


def test_operator_records_the_buyers_outcome(admin_url, signed_in, calls, server):
    from selenium.webdriver.support.ui import Select

    browser = signed_in
    open_call(browser, admin_url, calls["billable"])
    change_url = browser.current_url

    Select(css(browser, "#id_outcome")).select_by_visible_text("Booked")
    value = css(browser, "#id_job_value")
    value.clear()
    value.send_keys("350.00")
    css(browser, "#id_outcome_note").send_keys("Water heater replaced.")
    click_and_wait(browser, css(browser, "[name=_continue]"))
    assert "was changed successfully" in text_of(browser, ".messagelist .success")

    browser.get(change_url)  # a fresh load: what is shown now comes from the database
    assert Select(css(browser, "#id_outcome")).first_selected_option.text == "Booked"
    assert css(browser, "#id_job_value").get_attribute("value") == "350.00"
    assert css(browser, "#id_outcome_note").get_attribute("value") == "Water heater replaced."
    assert text_of(browser, ".field-outcome_recorded .readonly").endswith(" UTC")

    call = server.call(calls["billable"])
    assert call["outcome"] == "booked" and call["job_value"] == "350.00"
    assert call["outcome_note"] == "Water heater replaced." and call["outcome_at"]
    assert call["verdict"] == "billable" and call["revenue"] == "40.00"  # the facts did not move


def test_invalid_target_number_shows_the_error_at_the_field_and_saves_nothing(admin_url, signed_in, tmp_path):
    from selenium.webdriver.common.by import By

    browser = signed_in
    browser.get(admin_url + "/admin/network/target/")
    css(browser, "#searchbar").send_keys(AWAKE_LINE)
    click_and_wait(browser, css(browser, "#changelist-search [type=submit]"))
    click_and_wait(browser, browser.find_element(By.LINK_TEXT, "Awake line"))
    change_url = browser.current_url

    name, number = css(browser, "#id_name"), css(browser, "#id_number")
    assert number.get_attribute("value") == AWAKE_LINE
    name.clear()
    name.send_keys("Renamed by the UI test")
    number.clear()
    number.send_keys("555-CALL-NOW")
    click_and_wait(browser, css(browser, "[name=_save]"))
    save_page(browser, tmp_path / "target-error.png")

    assert browser.current_url == change_url  # not redirected: nothing was saved
    assert "Please correct the error below." in text_of(browser, ".errornote")
    errors = css_all(browser, ".errorlist")
    assert len(errors) == 1, [e.text for e in errors]  # only the number is wrong
    field_row = css(browser, ".form-row.field-number")
    assert "errors" in field_row.get_attribute("class").split()
    message = " ".join(field_row.find_element(By.CSS_SELECTOR, ".errorlist").text.split())
    assert "555-CALL-NOW" in message and "E.164" in message, message  # says what is wrong and what is expected
    assert css(browser, "#id_number").get_attribute("value") == "555-CALL-NOW"  # the input is kept to fix

    browser.get(change_url)  # a fresh load shows what is in the database
    assert css(browser, "#id_number").get_attribute("value") == AWAKE_LINE
    assert css(browser, "#id_name").get_attribute("value") == "Awake line"


def test_call_page_screenshot(admin_url, signed_in, calls, tmp_path):
    """Full-page screenshots of the call page for a person to look at (in pytest's tmp dir, printed)."""
    browser = signed_in
    open_call(browser, admin_url, calls["billable"])
    # The admin's stylesheet applied (served like in production): the header has its colour.
    assert css(browser, "#header").value_of_css_property("background-color") not in ("rgba(0, 0, 0, 0)", "")
    shots = [save_page(browser, tmp_path / "call-billable.png")]
    open_call(browser, admin_url, calls["after_hours"])
    browser.execute_script("document.querySelectorAll('details').forEach(d => d.open = true)")  # folded sections
    shots.append(save_page(browser, tmp_path / "call-after-hours-unfolded.png"))
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000, shot
    print("screenshots:", *shots, sep="\n  ")
