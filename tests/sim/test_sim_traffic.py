"""The traffic generator: a seeded day of calls with the specified mix, and paced runs of it."""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import re
import statistics
import time

import pytest

from callbroker.core.geo import ZipDirectory, ZipInfo
from callbroker.sim import cli as sim_cli
from callbroker.sim.emulator import Carrier, Delivery
from callbroker.sim.traffic import (
    _day_offsets,
    generate_day,
    nanp_number,
    percentile,
    run_traffic,
    run_traffic_processes,
)

TOKEN = "test-auth-token-0123456789abcdef"  # the same as conftest.TOKEN


def z(code, city, state, county, lat, lon, population, area_codes):
    return ZipInfo(code, "STANDARD", city, state, county, f"{city} County", "America/Chicago", lat, lon,
                   True, code, population, 60000, tuple(area_codes))


# A small world: Austin (in the plumbing area), the rest of Texas, and Oklahoma beyond.
ROWS = [
    z("78701", "Austin", "TX", "48453", 30.27, -97.74, 12000, ["512", "737"]),
    z("78702", "Austin", "TX", "48453", 30.26, -97.71, 22000, ["512", "737"]),
    z("78703", "Austin", "TX", "48453", 30.29, -97.77, 20000, ["512"]),
    z("78704", "Austin", "TX", "48453", 30.24, -97.76, 45000, ["512"]),
    z("78660", "Pflugerville", "TX", "48453", 30.44, -97.62, 80000, ["512", "737"]),
    z("75201", "Dallas", "TX", "48113", 32.79, -96.80, 30000, ["214", "469", "972"]),
    z("77002", "Houston", "TX", "48201", 29.76, -95.36, 15000, ["713", "281", "832"]),
    z("73102", "Oklahoma City", "OK", "40109", 35.47, -97.52, 6000, ["405"]),
]
DIRECTORY = ZipDirectory.from_rows(ROWS)

NETWORK = {
    "campaigns": [
        {"key": "plumbing", "name": "Austin Plumbing", "category": "plumbing",
         "ivr": {"ask_zip": "when_missing", "confirm_category": "If you need a plumber, press 1."},
         "blocked_prefixes": ["+1900"]},
        {"key": "roofing", "name": "Texas Roofing", "category": "roofing",
         "ivr": {"ask_zip": "never", "confirm_category": None}},
    ],
    "buyers": [
        {"key": "pipes", "name": "Pipes", "timezone": "America/Chicago", "targets": [
            {"key": "a", "campaign": "plumbing", "number": "+15125550101", "area": {"zips": ["78701", "78702"]}},
            {"key": "b", "campaign": "plumbing", "number": "+15125550102",
             "area": {"radius": [{"zip": "78701", "miles": 5}], "exclude_zips": ["78701"]}},
        ]},
        {"key": "roofs", "name": "Roofs", "timezone": "America/Chicago", "targets": [
            {"key": "r", "campaign": "roofing", "number": "+12145550101", "area": {"states": ["TX"]}},
        ]},
    ],
    "tracking_numbers": [
        {"number": "+15125550001", "campaign": "plumbing", "publisher": "pub-a", "label": "google"},
        {"number": "+15125550002", "campaign": "plumbing", "publisher": "pub-b", "label": "bing"},
        {"number": "+12145550001", "campaign": "roofing", "publisher": "pub-a", "label": "tv"},
    ],
}
PLUMBING_AREA = {"78701", "78702", "78703", "78704"}  # union of the two plumbing targets


@pytest.fixture(scope="module")
def day():
    return generate_day(NETWORK, calls=3000, seed=42, directory=DIRECTORY)


def share(calls, predicate) -> float:
    return sum(1 for c in calls if predicate(c)) / len(calls)


def test_the_plan_is_deterministic_for_a_seed(day):
    assert generate_day(NETWORK, calls=3000, seed=42, directory=DIRECTORY) == day
    assert generate_day(NETWORK, calls=3000, seed=43, directory=DIRECTORY) != day
    assert [c.at_seconds for c in day] == sorted(c.at_seconds for c in day)
    assert [c.index for c in day] == list(range(3000))


def test_arrivals_peak_in_business_hours(day):
    hours = collections.Counter(c.at_seconds // 3600 for c in day)
    business = sum(hours[h] for h in range(8, 18)) / len(day)
    night = sum(hours[h] for h in range(0, 6)) / len(day)
    evening = sum(hours[h] for h in range(18, 22)) / len(day)
    assert business > 0.6 and night < 0.04 and night < evening < business


def test_traffic_mix_matches_the_specified_shares(day):
    def tagged(tag):
        return lambda c: tag in c.tags

    assert 0.03 <= share(day, lambda c: c.is_spam) <= 0.07
    assert 0.05 <= share(day, tagged("repeat")) <= 0.11
    assert 0.07 <= share(day, tagged("out_of_area")) <= 0.13
    assert 0.55 <= share(day, lambda c: bool(c.params.get("FromZip"))) <= 0.65
    plumbing = [c for c in day if c.campaign == "plumbing"]
    assert 0.04 <= share(plumbing, tagged("wrong_category")) <= 0.10
    typed = [c for c in plumbing if "no_carrier_zip" in c.tags]
    assert 0.02 <= share(typed, tagged("invalid_zip_first")) <= 0.09
    spam_kinds = collections.Counter(t for c in day for t in c.tags if t.startswith("spam:"))
    assert set(spam_kinds) == {"spam:anonymous", "spam:blocked_prefix", "spam:failed_attestation"}


def test_caller_zips_come_from_the_campaign_area_weighted_by_population(day):
    plumbing = [c for c in day if c.campaign == "plumbing" and "out_of_area" not in c.tags]
    zips = collections.Counter(c.caller_zip for c in plumbing)
    assert set(zips) <= PLUMBING_AREA
    assert zips["78704"] > zips["78701"]  # 45,000 people against 12,000
    outside = [c for c in day if c.campaign == "plumbing" and "out_of_area" in c.tags]
    assert outside and all(c.caller_zip not in PLUMBING_AREA for c in outside)
    assert {DIRECTORY.get(c.caller_zip).state for c in outside} == {"TX"}  # same state first
    roofing_outside = {c.caller_zip for c in day if c.campaign == "roofing" and "out_of_area" in c.tags}
    assert roofing_outside == {"73102"}  # all of Texas is in the area: the nearest ZIP beyond


def test_a_state_wide_line_takes_the_metro_s_callers_without_widening_the_metro():
    """A plumbing line serving all of Texas beside the Austin lines: callers still come from Austin (the
    rest of Texas is the campaign's "just outside"), not from wherever in Texas most people live."""
    statewide = {"key": "s", "campaign": "plumbing", "number": "+15125550103", "area": {"states": ["TX"]}}
    pipes = {**NETWORK["buyers"][0], "targets": [*NETWORK["buyers"][0]["targets"], statewide]}
    network = {**NETWORK, "buyers": [pipes, *NETWORK["buyers"][1:]]}
    plumbing = [c for c in generate_day(network, calls=1000, seed=7, directory=DIRECTORY) if c.campaign == "plumbing"]
    assert {c.caller_zip for c in plumbing if "out_of_area" not in c.tags} <= PLUMBING_AREA
    assert {DIRECTORY.get(c.caller_zip).state for c in plumbing if "out_of_area" in c.tags} == {"TX"}


def test_blocked_prefix_spam_comes_from_valid_numbers():
    """Judged by its prefix, not turned away as an invalid caller ID (+1900 1…: no exchange starts with 1)."""
    from callbroker.core.phone import classify_caller

    blocked = [c for c in generate_day(NETWORK, calls=6000, seed=3, directory=DIRECTORY)
               if "spam:blocked_prefix" in c.tags]
    assert len(blocked) > 20
    assert all(c.caller.startswith("+1900") and classify_caller(c.caller)[1] == "valid" for c in blocked)


def test_caller_numbers_are_plausible_nanp_in_the_zips_area_code(day):
    for c in day:
        if c.is_spam:
            continue
        assert re.fullmatch(r"\+1[2-9]\d\d[2-9]\d{6}", c.caller), c.caller
        assert c.caller[6:8] != "11" and c.caller[5:8] != "555"
        assert c.caller[2:5] in DIRECTORY.get(c.caller_zip).area_codes
    anonymous = [c for c in day if "spam:anonymous" in c.tags]
    assert all(c.caller is None and c.params["FromZip"] == "" for c in anonymous)
    blocked = [c for c in day if "spam:blocked_prefix" in c.tags]
    assert all(c.caller.startswith("+1900") for c in blocked)
    failed = [c for c in day if "spam:failed_attestation" in c.tags]
    assert all(c.params["StirVerstat"] == "TN-Validation-Failed-C" for c in failed)
    stir = collections.Counter(c.params.get("StirVerstat") for c in day if not c.is_spam)
    assert stir.most_common(1)[0][0] == "TN-Validation-Passed-A"


def test_repeat_callers_reuse_an_earlier_number_of_the_same_campaign(day):
    seen: dict[str, set[str]] = collections.defaultdict(set)
    for c in day:
        if "repeat" in c.tags:
            assert c.caller in seen[c.campaign]
        elif c.caller:
            seen[c.campaign].add(c.caller)


def test_ivr_answers_follow_the_campaign(day):
    for c in day:
        digits = list(c.script.digits)
        if c.campaign == "roofing":
            assert digits == []  # never asks the ZIP, confirms nothing
            continue
        assert digits[-1] in ("1", "2")
        assert (digits[-1] == "2") == ("wrong_category" in c.tags)
        if c.params.get("FromZip"):
            assert digits[:-1] == []
            assert c.params["FromZip"] == c.caller_zip
        elif "invalid_zip_first" in c.tags:
            assert len(digits) == 3 and digits[1] == c.caller_zip
            assert DIRECTORY.get(digits[0]) is None
        else:
            assert digits[:-1] == [c.caller_zip]


def test_buyer_behaviour_profiles(day):
    behaviours = [b for c in day for b in c.buyers.values()]
    talks = [b.talk_seconds for b in behaviours]
    assert 120 <= statistics.median(talks) <= 180
    assert 0.15 <= sum(t < 60 for t in talks) / len(talks) <= 0.25
    assert 0.015 <= sum(b.busy for b in behaviours) / len(behaviours) <= 0.045
    assert 0.01 <= sum(b.declines_whisper for b in behaviours) / len(behaviours) <= 0.035
    answer = sum(b.answers for b in behaviours) / len(behaviours)
    assert 0.72 <= answer <= 0.97
    assert all(1 <= b.ring_seconds <= 40 for b in behaviours)
    assert all(set(c.buyers) == ({"+15125550101", "+15125550102"} if c.campaign == "plumbing"
                                 else {"+12145550101"}) for c in day)


def test_inactive_numbers_and_campaigns_get_no_calls():
    network = {
        **NETWORK,
        "campaigns": [dict(NETWORK["campaigns"][0]), {**NETWORK["campaigns"][1], "active": False}],
        "tracking_numbers": [{**NETWORK["tracking_numbers"][0], "active": False}, *NETWORK["tracking_numbers"][1:]],
    }
    plan = generate_day(network, calls=200, seed=1, directory=DIRECTORY)
    assert {c.tracking_number for c in plan} == {"+15125550002"}
    assert generate_day({"campaigns": [], "tracking_numbers": []}, calls=10, seed=1, directory=DIRECTORY) == []


def test_nanp_number_avoids_n11_exchanges():
    import random

    rng = random.Random(1)
    for _ in range(2000):
        number = nanp_number(["512"], rng)
        assert number.startswith("+1512") and len(number) == 12
        assert number[5] in "23456789" and number[6:8] != "11"


def test_percentile():
    assert percentile([], 0.5) == 0
    assert percentile([3, 1, 2], 0.5) == 2
    assert percentile(list(range(1, 101)), 0.99) == 99


# --- running ---------------------------------------------------------------------------------------

IVR = ('<?xml version="1.0" encoding="UTF-8"?><Response><Gather numDigits="5" action="/zip">'
       "<Say>Enter your ZIP</Say></Gather></Response>")
DIAL = ('<?xml version="1.0" encoding="UTF-8"?><Response><Dial action="/done">'
        "<Number>+15125550101</Number></Dial></Response>")


def test_run_traffic_places_every_call_and_reports(server, day):
    server.routes["/carriers/twilio/voice"] = IVR
    server.routes["/zip"] = DIAL
    planned = day[:60]
    finished = []
    with Carrier(server.url, TOKEN, seed=3) as carrier:
        stats = run_traffic(carrier, planned, rate=None, concurrency=6,
                            on_done=lambda call, record: finished.append((call.index, record.call_sid)))
    assert stats.calls == 60 and len(finished) == 60
    assert sorted(i for i, _ in finished) == list(range(60))
    assert stats.errors == 0, stats.problems
    assert stats.completed == 60 and stats.fallbacks == 0
    assert len(stats.latencies_ms) == len(server.requests)
    assert stats.p50_ms <= stats.p99_ms and stats.calls_per_second > 0
    voice = server.to("/carriers/twilio/voice")
    assert {s.form["To"] for s in voice} <= {"+15125550001", "+15125550002", "+12145550001"}
    assert json.dumps(stats.as_dict())


def test_run_traffic_processes_splits_the_calls_and_merges_the_stats(server, day):
    server.routes["/carriers/twilio/voice"] = IVR
    server.routes["/zip"] = DIAL
    planned = day[:30]
    carriers: list[int] = []

    def make(i: int) -> Carrier:
        carriers.append(i)  # in the child: the parent's list stays empty
        return Carrier(server.url, TOKEN, seed=i)

    stats = run_traffic_processes(make, planned, concurrency=5, processes=3)
    assert stats.calls == 30 and stats.errors == 0, stats.problems
    assert stats.completed == 30 and len(stats.latencies_ms) == len(server.requests)
    assert carriers == []  # every call was placed by the forked processes
    voice = server.to("/carriers/twilio/voice")
    assert len(voice) == 30 and len({s.form["CallSid"] for s in voice}) == 30  # each call placed once
    assert stats.wall_seconds > 0


def test_run_traffic_processes_reports_a_process_that_failed(server, day):
    def make(i: int) -> Carrier:
        if i == 1:
            raise RuntimeError("no carrier for you")
        return Carrier(server.url, TOKEN, seed=i)

    stats = run_traffic_processes(make, day[:6], concurrency=2, processes=2)
    assert stats.calls == 3 and stats.errors == 3  # process 1's three calls are errors, not lost
    assert any("no carrier for you" in p for p in stats.problems)


def test_run_traffic_processes_reports_a_process_that_died_without_reporting(server, day):
    def make(i: int) -> Carrier:
        if i == 0:
            os._exit(3)  # as if killed: no exception, nothing put on the results queue
        return Carrier(server.url, TOKEN, seed=i)

    stats = run_traffic_processes(make, day[:6], concurrency=2, processes=2)
    assert stats.calls == 3 and stats.errors == 3
    assert stats.problems == ["traffic process 0 ended (exit code 3) without reporting"]


def test_run_traffic_paces_at_the_rate(server, day):
    with Carrier(server.url, TOKEN) as carrier:
        started = time.perf_counter()
        stats = run_traffic(carrier, day[:11], rate=50.0, concurrency=4)
    assert time.perf_counter() - started >= 0.19  # 10 gaps of 20 ms
    assert stats.calls == 11


def test_following_the_day_keeps_the_rate_on_average_and_the_busy_hours_busy(day):
    """The plan's day compressed onto the run: the same length as evenly paced calls, and a call of the
    busy hours followed sooner by the next than a call of the night."""
    offsets = _day_offsets(day, rate=10.0)
    assert offsets[0] == 0 and offsets[-1] == pytest.approx((len(day) - 1) / 10.0)
    assert offsets == sorted(offsets)
    gaps = collections.defaultdict(list)
    for call, here, after in zip(day, offsets, offsets[1:], strict=False):
        gaps[call.at_seconds // 3600].append(after - here)
    busy = statistics.mean(g for h in range(9, 16) for g in gaps[h])
    night = statistics.mean(g for h in range(0, 5) for g in gaps[h])
    assert night > 5 * busy


def test_run_traffic_following_the_day_places_calls_as_the_plan_spaces_them(server, day):
    """Two calls a second apart in the plan, then one ten hours later: at 4 calls/s on average the first
    two come together and the third half a second on (evenly paced: a quarter of a second apart each)."""
    calls = [dataclasses.replace(day[0], at_seconds=3600), dataclasses.replace(day[1], at_seconds=3601),
             dataclasses.replace(day[2], at_seconds=39_600)]
    with Carrier(server.url, TOKEN) as carrier:
        stats = run_traffic(carrier, calls, rate=4.0, concurrency=3, follow_day=True)
    assert stats.calls == 3 and stats.errors == 0
    first, second, third = sorted(seen.at for seen in server.to("/carriers/twilio/voice"))[-3:]
    assert second - first < 0.2 and third - first >= 0.45


def test_run_traffic_processes_paces_the_rate_over_all_processes(server, day):
    """``rate`` is the whole run's: 2 processes at 40 calls/s together place 21 calls in 0.5 s or more."""
    make = lambda i: Carrier(server.url, TOKEN, seed=i)  # noqa: E731
    started = time.perf_counter()
    stats = run_traffic_processes(make, day[:21], concurrency=8, processes=2, rate=40.0)
    assert time.perf_counter() - started >= 0.47  # process 0: 11 calls at 20/s, 10 gaps of 50 ms
    assert stats.calls == 21 and stats.errors == 0, stats.problems
    assert len({s.form["CallSid"] for s in server.to("/carriers/twilio/voice")}) == 21


def test_run_traffic_survives_a_broken_server_and_a_broken_on_done(server, day):
    server.routes["/carriers/twilio/voice"] = lambda seen: (500, "text/plain", "boom")
    server.routes["/carriers/twilio/fallback"] = lambda seen: (500, "text/plain", "boom")

    def explode(call, record):
        raise RuntimeError("reporting bug")

    with Carrier(server.url, TOKEN) as carrier:
        stats = run_traffic(carrier, day[:5], rate=None, concurrency=2, on_done=explode,
                            delivery=Delivery(duplicate=True))
    assert stats.calls == 5 and stats.fallbacks == 5
    assert stats.errors == 10  # each call failed, and each on_done raised
    assert any("reporting bug" in p for p in stats.problems)
    assert len(server.to("/carriers/twilio/voice")) == 10  # duplicate delivery applied to every call


# --- the command line --------------------------------------------------------------------------------


def run_cli(argv):
    import argparse

    parser = argparse.ArgumentParser(prog="callbroker sim")
    sim_cli.add_arguments(parser.add_subparsers(dest="command", required=True))
    return sim_cli.run(parser.parse_args(argv))


def test_cli_call_prints_a_transcript(server, capsys):
    server.routes["/carriers/twilio/voice"] = IVR
    server.routes["/zip"] = DIAL
    code = run_cli(["call", "--url", server.url, "--token", TOKEN, "--to", "+15125550001",
                    "--digits", "78701", "--talk", "75"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Gather->78701" in out and "+15125550101 completed bridged=True duration=75s" in out
    assert server.to("/zip")[0].form["Digits"] == "78701"


def test_cli_call_no_answer_json(server, capsys):
    server.routes["/carriers/twilio/voice"] = DIAL
    code = run_cli(["call", "--url", server.url, "--token", TOKEN, "--to", "+15125550001", "--no-answer",
                    "--from", "anonymous", "--json"])
    record = json.loads(capsys.readouterr().out)
    assert code == 0 and record["dials"][0]["status"] == "no-answer"
    assert server.to("/carriers/twilio/voice")[0].form["From"] == "+266696687"


def test_cli_traffic_with_a_network_file(server, tmp_path, capsys):
    import yaml

    server.routes["/carriers/twilio/voice"] = DIAL
    network = tmp_path / "net.yaml"
    network.write_text(yaml.safe_dump(NETWORK))
    code = run_cli(["traffic", "--url", server.url, "--token", TOKEN, "--network", str(network),
                    "--calls", "12", "--concurrency", "3", "--seed", "5"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert len(out) == 13 and out[-1].startswith("12 calls in")
    assert re.match(r"\d\d:\d\d:\d\d \+1\d{10} \w+", out[0])


def test_cli_signs_with_the_token_the_server_has(server, monkeypatch):
    """--token, else TWILIO_AUTH_TOKEN, else the demo's token: what a development server checks with."""
    from twilio.request_validator import RequestValidator

    from callbroker import DEMO_AUTH_TOKEN

    server.routes["/carriers/twilio/voice"] = DIAL
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    assert run_cli(["call", "--url", server.url, "--to", "+15125550001"]) == 0
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", "from-the-environment")
    assert run_cli(["call", "--url", server.url, "--to", "+15125550001"]) == 0
    assert run_cli(["call", "--url", server.url, "--to", "+15125550001", "--token", TOKEN]) == 0
    voice = server.to("/carriers/twilio/voice")
    for seen, token in zip(voice, (DEMO_AUTH_TOKEN, "from-the-environment", TOKEN), strict=True):
        assert seen.signature == RequestValidator(token).compute_signature(server.url + "/carriers/twilio/voice",
                                                                           seen.form)


@pytest.mark.parametrize("command", [["call", "--to", "+15125550001"], ["traffic", "--calls", "2"]])
def test_cli_says_what_a_403_means_and_which_option_fixes_it(server, tmp_path, capsys, command):
    """A production server signs against its CALLBROKER_PUBLIC_URL: driven with --url alone (the README's
    line) every call failed, and all the emulator said was ``HTTP 403``."""
    import yaml

    refused = lambda seen: (403, "text/plain", "Forbidden: invalid signature")  # noqa: E731
    for path in ("/carriers/twilio/voice", "/carriers/twilio/fallback", "/carriers/twilio/status"):
        server.routes[path] = refused
    network = tmp_path / "net.yaml"
    network.write_text(yaml.safe_dump(NETWORK))
    extra = ["--network", str(network)] if command[0] == "traffic" else []

    code = run_cli([command[0], "--url", server.url, "--token", TOKEN, *command[1:], *extra])

    err = capsys.readouterr().err
    assert code == 1
    assert f"refused webhooks with 403 (signature or AccountSid): they were signed for {server.url} with --token" in err
    assert "CALLBROKER_PUBLIC_URL set checks against that URL: give it as --public-url" in err
    assert len(err.strip().splitlines()) == 1


def test_cli_sends_the_account_the_server_takes(server, monkeypatch):
    """--account-sid, else the first of TWILIO_ACCOUNT_SID (a server pinned to it refused the emulator's)."""
    server.routes["/carriers/twilio/voice"] = DIAL
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", " AC" + "a" * 32 + ", AC" + "b" * 32)
    assert run_cli(["call", "--url", server.url, "--token", TOKEN, "--to", "+15125550001"]) == 0
    assert run_cli(["call", "--url", server.url, "--token", TOKEN, "--to", "+15125550001",
                    "--account-sid", "AC" + "c" * 32]) == 0
    monkeypatch.delenv("TWILIO_ACCOUNT_SID")
    assert run_cli(["call", "--url", server.url, "--token", TOKEN, "--to", "+15125550001"]) == 0
    accounts = [seen.form["AccountSid"] for seen in server.to("/carriers/twilio/voice")]
    assert accounts == ["AC" + "a" * 32, "AC" + "c" * 32, "AC" + "0" * 30 + "01"]
    assert {seen.form["AccountSid"] for seen in server.requests} == set(accounts)  # every webhook of a call


def test_cli_signs_with_the_accounts_token_of_twilio_account_tokens(server, monkeypatch):
    """A server with TWILIO_ACCOUNT_TOKENS verifies each webhook with the token of the account it names only.
    Until 2026-12-08 the emulator, in the same environment, signed with TWILIO_AUTH_TOKEN (else the demo's token)
    and named its own account: every webhook refused 403, and the hint named TWILIO_AUTH_TOKEN. It now names
    the account (--account-sid, TWILIO_ACCOUNT_SID's, else the first of TWILIO_ACCOUNT_TOKENS) and signs with
    its token, the new one of a rotation; --token still wins."""
    from twilio.request_validator import RequestValidator

    a, b = "AC" + "a" * 32, "AC" + "b" * 32
    server.routes["/carriers/twilio/voice"] = DIAL
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_TOKENS", f" {a.upper()}:token-of-a|old-of-a , {b}:token-of-b")
    assert run_cli(["call", "--url", server.url, "--to", "+15125550001"]) == 0
    assert run_cli(["call", "--url", server.url, "--to", "+15125550001", "--account-sid", b]) == 0
    assert run_cli(["call", "--url", server.url, "--to", "+15125550001", "--token", TOKEN]) == 0
    voice = server.to("/carriers/twilio/voice")
    assert [seen.form["AccountSid"] for seen in voice] == [a, b, a]
    for seen, token in zip(voice, ("token-of-a", "token-of-b", TOKEN), strict=True):
        assert seen.signature == RequestValidator(token).compute_signature(server.url + "/carriers/twilio/voice",
                                                                           seen.form)


def test_cli_names_the_account_of_twilio_account_sid_that_has_a_token_not_a_telnyx_one_first(server, monkeypatch):
    """TWILIO_ACCOUNT_SID may name a Telnyx account (a UUID, verified by its key) beside those of
    TWILIO_ACCOUNT_TOKENS (settings.py takes that). Named first, the emulator playing Twilio sent that UUID,
    which has no token, and signed with TWILIO_AUTH_TOKEN (else the demo's): every webhook refused 403. It now
    sends the first of TWILIO_ACCOUNT_SID that has a token there, and signs with that token."""
    from twilio.request_validator import RequestValidator

    telnyx_account, a = "6d3f2c1a-0b4e-4c8d-9a7f-1e2d3c4b5a69", "AC" + "a" * 32
    server.routes["/carriers/twilio/voice"] = DIAL
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", f"{telnyx_account},{a}")
    monkeypatch.setenv("TWILIO_ACCOUNT_TOKENS", f"{a}:token-of-a")
    assert run_cli(["call", "--url", server.url, "--to", "+15125550001"]) == 0
    [voice] = server.to("/carriers/twilio/voice")
    assert voice.form["AccountSid"] == a
    assert voice.signature == RequestValidator("token-of-a").compute_signature(server.url + "/carriers/twilio/voice",
                                                                              voice.form)


def test_cli_signs_with_the_token_of_an_account_named_in_another_case(server, monkeypatch):
    """The server reads an account in any case as the carrier sends it (AC and lower-case hex, a lower-case
    UUID), in TWILIO_ACCOUNT_SID as in TWILIO_ACCOUNT_TOKENS. Until 2026-12-08 the emulator compared them as
    written: TWILIO_ACCOUNT_SID's account in upper case (or --account-sid) found no token in
    TWILIO_ACCOUNT_TOKENS, the calls were signed with TWILIO_AUTH_TOKEN (else the demo's) and all refused 403.
    It now signs with that account's token, and names it as the carrier does (--account-sid as given)."""
    from twilio.request_validator import RequestValidator

    a, b = "AC" + "a" * 32, "AC" + "b" * 32
    server.routes["/carriers/twilio/voice"] = DIAL
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_SID", a.upper())
    monkeypatch.setenv("TWILIO_ACCOUNT_TOKENS", f"{b}:token-of-b,{a}:token-of-a")
    assert run_cli(["call", "--url", server.url, "--to", "+15125550001"]) == 0
    assert run_cli(["call", "--url", server.url, "--to", "+15125550001", "--account-sid", "ac" + "B" * 32]) == 0
    voice = server.to("/carriers/twilio/voice")
    assert [seen.form["AccountSid"] for seen in voice] == [a, "ac" + "B" * 32]
    for seen, token in zip(voice, ("token-of-a", "token-of-b"), strict=True):
        assert seen.signature == RequestValidator(token).compute_signature(server.url + "/carriers/twilio/voice",
                                                                           seen.form)


def test_cli_says_a_403_came_with_the_accounts_token(server, monkeypatch, capsys):
    server.routes["/carriers/twilio/voice"] = lambda seen: (403, "text/plain", "Forbidden: invalid signature")
    monkeypatch.delenv("TWILIO_ACCOUNT_SID", raising=False)
    monkeypatch.setenv("TWILIO_ACCOUNT_TOKENS", "AC" + "a" * 32 + ":token-of-a")

    assert run_cli(["call", "--url", server.url, "--to", "+15125550001"]) == 1

    err = capsys.readouterr().err
    assert f"they were signed for {server.url} with {'AC' + 'a' * 32}'s token of TWILIO_ACCOUNT_TOKENS" in err
    assert "(with TWILIO_ACCOUNT_TOKENS set, that account's token as --token)" in err and "token-of-a" not in err


RECORDED_DIAL = ('<?xml version="1.0" encoding="UTF-8"?><Response><Dial action="/done" record="record-from-answer" '
                 'recordingStatusCallback="/rec"><Number>+15125550101</Number></Dial></Response>')
STATUS = "/carriers/twilio/status"


def test_cli_traffic_late_recording_sends_each_recording_after_its_calls_final_status(server, tmp_path, capsys):
    import yaml

    server.routes["/carriers/twilio/voice"] = RECORDED_DIAL
    network = tmp_path / "net.yaml"
    network.write_text(yaml.safe_dump(NETWORK))
    code = run_cli(["traffic", "--url", server.url, "--token", TOKEN, "--network", str(network), "--calls", "12",
                    "--concurrency", "2", "--seed", "5", "--late-recording"])
    assert code == 0, capsys.readouterr().out
    order = [(r.path, r.form.get("CallSid")) for r in server.requests if r.path in (STATUS, "/rec")]
    recorded = {sid for path, sid in order if path == "/rec"}
    assert recorded, "no buyer answered: the plan of seed 5 should have some talk"
    for sid in recorded:
        assert order.index((STATUS, sid)) < order.index(("/rec", sid))


@pytest.mark.parametrize("flags, first, then", [
    (["--hang-up-after", "40", "--status-first"], STATUS, "/done"),  # the call ended before the buyer's result
    (["--hang-up-after", "40"], "/done", STATUS),  # as the emulator sends them otherwise
    (["--late-recording"], STATUS, "/rec"),
    ([], "/rec", STATUS),
])
def test_cli_call_delivery_flags_change_the_order_of_the_callbacks(server, capsys, flags, first, then):
    server.routes["/carriers/twilio/voice"] = RECORDED_DIAL
    code = run_cli(["call", "--url", server.url, "--token", TOKEN, "--to", "+15125550001", *flags])
    assert code == 0, capsys.readouterr().out
    paths = server.paths()
    assert paths.count(STATUS) == 1 and paths.count("/done") == 1 and paths.count("/rec") == 1
    assert paths.index(first) < paths.index(then)


def test_cli_call_duplicates_delivers_every_webhook_twice(server, capsys):
    server.routes["/carriers/twilio/voice"] = RECORDED_DIAL
    assert run_cli(["call", "--url", server.url, "--token", TOKEN, "--to", "+15125550001", "--duplicates"]) == 0
    paths = server.paths()
    assert paths.count("/carriers/twilio/voice") == 2 and paths.count(STATUS) == 2 and paths.count("/rec") == 2


def test_cli_call_status_first_needs_the_caller_to_hang_up(server, capsys):
    assert run_cli(["call", "--url", server.url, "--token", TOKEN, "--to", "+15125550001", "--status-first"]) == 2
    assert "--hang-up-after" in capsys.readouterr().err
    assert server.requests == []  # no call placed


@pytest.mark.parametrize(("argv", "says"), [
    (["traffic", "--rate", "-1"], "argument --rate: -1 calls per second"),  # was: as fast as possible
    (["traffic", "--calls", "0"], "argument --calls: 0 is below 1"),  # was: "has no tracking numbers to call"
    (["traffic", "--time-scale", "-1"], "argument --time-scale: -1 is below 0"),
    (["call", "--to", "+15125550101", "--talk", "-5"], "argument --talk: -5 is below 0"),
])
def test_cli_refuses_numbers_out_of_range_in_one_line(argv, says, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli([*argv, "--url", "http://127.0.0.1:9"])
    assert exit_.value.code == 2 and says in capsys.readouterr().err


@pytest.mark.parametrize(("argv", "says"), [
    # each was read as "not given" (the demo's token, --url's, the current directory) or placed calls to ""
    (["traffic", "--token", ""], "argument --token: it is empty: give the auth token"),
    (["traffic", "--public-url", " "], "argument --public-url: it is empty: give the URL the server signs"),
    (["traffic", "--network", ""], "argument --network: it is empty: give the network file's path"),
    (["call", "--to", ""], "argument --to: it is empty: give the tracking number to call"),
])
def test_cli_refuses_an_empty_value_in_one_line_naming_the_option(argv, says, server, capsys):
    with pytest.raises(SystemExit) as exit_:
        run_cli([*argv, "--url", server.url])
    assert exit_.value.code == 2 and says in capsys.readouterr().err
    assert server.requests == []  # no call placed


def test_cli_refuses_an_empty_url_in_one_line(capsys):
    """It placed every call, each failing at its first webhook ('/carriers/twilio/voice' is not a URL)."""
    with pytest.raises(SystemExit) as exit_:
        run_cli(["traffic", "--url", "", "--calls", "1"])
    assert exit_.value.code == 2
    assert "argument --url: it is empty: give the server's base URL" in capsys.readouterr().err


@pytest.mark.parametrize(("option", "address"), [
    ("--url", "example.com"), ("--url", "127.0.0.1:8000"), ("--url", "ftp://127.0.0.1"), ("--url", "http://"),
    ("--url", "http://127.0.0.1:99999"), ("--url", "http://127.0.0.1:0"), ("--public-url", "calls.example.com"),
])
def test_cli_refuses_an_address_it_cannot_call_in_one_line(option, address, capsys):
    """It placed every call, each failing at its first webhook (no scheme to reach)."""
    url = address if option == "--url" else "http://127.0.0.1:9"
    extra = [option, address] if option != "--url" else []
    with pytest.raises(SystemExit) as exit_:
        run_cli(["traffic", "--calls", "1", "--url", url, *extra])
    assert exit_.value.code == 2
    assert f"argument {option}: {address!r} is not an http:// or https:// address" in capsys.readouterr().err



def test_the_summary_of_one_call_is_in_the_singular():
    """``1 calls in 0.2 s …, 1 fallbacks, …; 1 webhooks`` read as a mistake in the figures."""
    from callbroker.sim.traffic import TrafficStats

    stats = TrafficStats(calls=1, completed=1, fallbacks=1, latencies_ms=[3.0], wall_seconds=0.5)
    assert stats.summary().startswith("1 call in 0.5 s (2.0/s): 1 completed, 0 bridged, 1 fallback, "
                                      "0 with errors; 1 webhook, p50 ")
