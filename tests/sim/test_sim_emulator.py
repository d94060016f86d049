"""The carrier emulator against a canned-TwiML server: does it play Twilio's side faithfully?"""

from __future__ import annotations

import concurrent.futures
import time

from twilio.request_validator import RequestValidator

from callbroker.sim.emulator import (
    ANONYMOUS_NUMBER,
    BuyerBehaviour,
    CallerScript,
    Carrier,
    Delivery,
)

TOKEN = "test-auth-token-0123456789abcdef"  # the same as conftest.TOKEN

VOICE = "/carriers/twilio/voice"
FALLBACK = "/carriers/twilio/fallback"
STATUS = "/carriers/twilio/status"
OUR_NUMBER = "+15125550000"
CALLER = "+15125551234"
BUYER_A = "+15125550101"
BUYER_B = "+15125550102"


def xml(body: str) -> str:
    return f'<?xml version="1.0" encoding="UTF-8"?><Response>{body}</Response>'


# --- signatures and inbound parameters ---------------------------------------------------------


def test_every_request_is_signed_over_the_url_it_was_sent_to(server, carrier):
    server.routes[VOICE] = xml(
        '<Gather numDigits="5" action="/ivr/zip?step=1"><Say>Enter your ZIP</Say></Gather>'
    )
    server.routes["/ivr/zip"] = xml(f'<Dial action="/dial-done"><Number>{BUYER_A}</Number></Dial>')
    carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(digits=("78701",)))

    assert len(server.requests) >= 4  # voice, gather action, dial action, status
    good, bad = RequestValidator(TOKEN), RequestValidator("wrong-token")
    for seen in server.requests:
        assert seen.signature, seen.path
        assert good.validate(seen.url, seen.form, seen.signature), seen.path
        assert not bad.validate(seen.url, seen.form, seen.signature), seen.path
    assert server.to("/ivr/zip")[0].query == {"step": "1"}


def test_signature_uses_the_public_url_not_the_transport_url(server):
    public = "https://calls.example.com"
    server.routes[VOICE] = xml("<Say>hi</Say>")
    with Carrier(server.url, TOKEN, public_url=public, seed=1) as c:
        c.place_call(OUR_NUMBER, CALLER)
    seen = server.to(VOICE)[0]
    validator = RequestValidator(TOKEN)
    assert validator.validate(public + VOICE, seen.form, seen.signature)
    assert not validator.validate(seen.url, seen.form, seen.signature)


def test_get_requests_sign_the_query_string(server, carrier):
    server.routes[VOICE] = xml('<Redirect method="GET">/next?a=1</Redirect>')
    server.routes["/next"] = xml("<Hangup/>")
    carrier.place_call(OUR_NUMBER, CALLER)
    seen = server.to("/next")[0]
    assert seen.method == "GET"
    assert seen.query["a"] == "1" and seen.query["CallStatus"] == "in-progress"
    assert RequestValidator(TOKEN).validate(seen.url, {}, seen.signature)


def test_inbound_parameters_look_like_twilio(server, carrier):
    carrier.place_call(
        OUR_NUMBER,
        CALLER,
        params={"FromZip": "", "FromState": "TX", "StirVerstat": "TN-Validation-Passed-A"},
    )
    p = server.to(VOICE)[0].form
    assert p["CallSid"].startswith("CA") and len(p["CallSid"]) == 34
    assert p["AccountSid"].startswith("AC") and len(p["AccountSid"]) == 34
    assert (p["From"], p["Caller"], p["To"], p["Called"]) == (CALLER, CALLER, OUR_NUMBER, OUR_NUMBER)
    assert (p["CallStatus"], p["Direction"], p["ApiVersion"]) == ("ringing", "inbound", "2010-04-01")
    assert p["FromZip"] == "" and p["CallerZip"] == ""  # present but empty
    assert p["FromState"] == "TX" and p["CallerState"] == "TX"
    assert p["StirVerstat"] == "TN-Validation-Passed-A"


def test_sids_are_unique_even_for_the_same_seed(server):
    server.routes[VOICE] = xml(f"<Dial>{BUYER_A}</Dial>")
    sids = set()
    for _ in range(3):
        with Carrier(server.url, TOKEN, seed=7) as c:
            record = c.place_call(OUR_NUMBER, CALLER)
        sids |= {record.call_sid, record.dials[0].child_sid}
    assert len(sids) == 6


def test_anonymous_caller(server, carrier):
    record = carrier.place_call(OUR_NUMBER, None)
    assert server.to(VOICE)[0].form["From"] == ANONYMOUS_NUMBER
    assert record.from_ == ANONYMOUS_NUMBER


# --- Gather ---------------------------------------------------------------------------------------


def test_gather_posts_digits_to_the_action(server, carrier):
    server.routes[VOICE] = xml('<Gather numDigits="5" action="zip"><Say>Enter your ZIP code</Say></Gather>')
    server.routes["/carriers/twilio/zip"] = xml(
        '<Gather numDigits="1" action="/confirm"><Say>Press 1 for plumbing</Say></Gather>'
    )
    server.routes["/confirm"] = xml("<Say>Thanks</Say><Hangup/>")
    record = carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(digits=("78701", "1")))

    zip_request = server.to("/carriers/twilio/zip")[0]  # relative to the voice URL's directory
    assert zip_request.form["Digits"] == "78701"
    assert zip_request.form["CallStatus"] == "in-progress"
    assert server.to("/confirm")[0].form["Digits"] == "1"
    assert record.verbs_executed[:2] == ["Gather->78701", "Gather->1"]
    assert record.said == "Enter your ZIP code Press 1 for plumbing Thanks"
    assert record.hung_up_by == "app" and record.final_status == "completed"
    assert record.ok, record.transcript()


def test_gather_without_input_falls_through(server, carrier):
    server.routes[VOICE] = xml(
        '<Gather numDigits="5" action="/zip" timeout="5"><Say>Enter your ZIP</Say></Gather>'
        "<Say>We did not get that</Say>"
    )
    record = carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(digits=("",)))
    assert server.to("/zip") == []
    assert record.verbs_executed == ["Gather->(no input)", "Say:We did not get that"]
    assert record.hung_up_by == "end"
    assert record.duration == 2 + 5 + 2  # prompt, timeout, second prompt


def test_gather_action_on_empty_result_posts_empty_digits(server, carrier):
    server.routes[VOICE] = xml('<Gather action="/zip" actionOnEmptyResult="true"><Say>ZIP?</Say></Gather>')
    carrier.place_call(OUR_NUMBER, CALLER)
    assert server.to("/zip")[0].form["Digits"] == ""


def test_gather_stops_at_the_finish_key(server, carrier):
    server.routes[VOICE] = xml('<Gather action="/zip"><Say>ZIP then pound</Say></Gather>')
    carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(digits=("787#",)))
    form = server.to("/zip")[0].form
    assert (form["Digits"], form["FinishedOnKey"]) == ("787", "#")


# --- Dial -----------------------------------------------------------------------------------------


def test_serial_ring_tree_through_dial_actions(server, carrier):
    server.routes[VOICE] = xml(f'<Dial action="/ring/1" timeout="20"><Number>{BUYER_A}</Number></Dial>')
    server.routes["/ring/1"] = xml(f'<Dial action="/ring/2" timeout="20"><Number>{BUYER_B}</Number></Dial>')
    server.routes["/ring/2"] = xml("<Hangup/>")
    buyers = {
        BUYER_A: BuyerBehaviour(answers=False),
        BUYER_B: BuyerBehaviour(ring_seconds=4, talk_seconds=75),
    }
    record = carrier.place_call(OUR_NUMBER, CALLER, buyers=buyers)

    first, second = server.to("/ring/1")[0].form, server.to("/ring/2")[0].form
    assert (first["DialCallStatus"], first["DialBridged"], first["DialCallDuration"]) == ("no-answer", "false", "0")
    assert (second["DialCallStatus"], second["DialBridged"], second["DialCallDuration"]) == ("completed", "true", "75")
    assert first["DialCallSid"].startswith("CA") and first["DialCallSid"] != second["DialCallSid"]
    assert second["CallSid"] == record.call_sid and second["CallStatus"] == "in-progress"
    assert [d.status for d in record.dials] == ["no-answer", "completed"]
    assert record.talk_seconds == 75
    assert record.duration == 20 + 4 + 75
    assert record.verbs_executed == [f"Dial:{BUYER_A}:no-answer", f"Dial:{BUYER_B}:completed:bridged", "Hangup"]


def test_simultaneous_ring_first_answer_wins(server, carrier):
    server.routes[VOICE] = xml(
        f'<Dial action="/done"><Number>{BUYER_A}</Number><Number>{BUYER_B}</Number></Dial>'
    )
    buyers = {BUYER_A: BuyerBehaviour(ring_seconds=9), BUYER_B: BuyerBehaviour(ring_seconds=3, talk_seconds=30)}
    record = carrier.place_call(OUR_NUMBER, CALLER, buyers=buyers)
    assert record.dials[0].number == BUYER_B and record.dials[0].ring_seconds == 3
    assert server.to("/done")[0].form["DialCallDuration"] == "30"


def test_busy_and_failed_buyers(server, carrier):
    server.routes[VOICE] = xml(f'<Dial action="/a"><Number>{BUYER_A}</Number></Dial>')
    server.routes["/a"] = xml(f'<Dial action="/b">{BUYER_B}</Dial>')
    buyers = {BUYER_A: BuyerBehaviour(busy=True), BUYER_B: BuyerBehaviour(fails=True)}
    carrier.place_call(OUR_NUMBER, CALLER, buyers=buyers)
    assert server.to("/a")[0].form["DialCallStatus"] == "busy"
    assert server.to("/b")[0].form["DialCallStatus"] == "failed"


def test_ring_timeout_means_no_answer(server, carrier):
    server.routes[VOICE] = xml(f'<Dial action="/a" timeout="10"><Number>{BUYER_A}</Number></Dial>')
    record = carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(ring_seconds=10)})
    assert server.to("/a")[0].form["DialCallStatus"] == "no-answer"
    assert record.duration == 10


def test_whisper_accepted_then_bridged(server, carrier):
    server.routes[VOICE] = xml(f'<Dial action="/done"><Number url="/whisper">{BUYER_A}</Number></Dial>')
    server.routes["/whisper"] = xml(
        '<Gather numDigits="1" action="/whisper/answer"><Say>Plumbing call, press 1</Say></Gather><Hangup/>'
    )
    server.routes["/whisper/answer"] = xml("<Say>Connecting</Say>")
    record = carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(talk_seconds=100)})

    whisper = server.to("/whisper")[0].form
    child = record.dials[0].child_sid
    assert whisper["CallSid"] == child != record.call_sid
    assert whisper["ParentCallSid"] == record.call_sid
    assert (whisper["Direction"], whisper["CallStatus"]) == ("outbound-dial", "in-progress")
    assert (whisper["From"], whisper["To"]) == (CALLER, BUYER_A)
    answer = server.to("/whisper/answer")[0].form
    assert (answer["Digits"], answer["FinishedOnKey"]) == ("1", "")  # numDigits reached: no finish key
    done = server.to("/done")[0].form
    assert (done["DialCallStatus"], done["DialBridged"], done["DialCallDuration"]) == ("completed", "true", "100")
    assert done["DialCallSid"] == child
    assert record.whisper_said == "Plumbing call, press 1 Connecting"
    assert "Plumbing" not in record.said


def test_whisper_gather_action_says_which_key_finished_it(server, carrier):
    server.routes[VOICE] = xml(f'<Dial action="/done"><Number url="/whisper">{BUYER_A}</Number></Dial>')
    server.routes["/whisper"] = xml('<Gather action="/whisper/answer"><Say>Press 1 then pound</Say></Gather>')
    carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour()})
    answer = server.to("/whisper/answer")[0].form
    assert (answer["Digits"], answer["FinishedOnKey"]) == ("1", "#")


def test_whisper_declined_is_completed_but_not_bridged(server, carrier):
    server.routes[VOICE] = xml(f'<Dial action="/done"><Number url="/whisper">{BUYER_A}</Number></Dial>')
    server.routes["/whisper"] = xml(
        '<Gather numDigits="1" action="/whisper/answer" timeout="5"><Say>Press 1 to accept</Say></Gather>'
        "<Hangup/>"
    )
    record = carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(declines_whisper=True)})

    assert server.to("/whisper/answer") == []
    done = server.to("/done")[0].form
    whisper_seconds = 2 + 5  # prompt + Gather timeout
    assert (done["DialCallStatus"], done["DialBridged"]) == ("completed", "false")
    assert done["DialCallDuration"] == str(whisper_seconds)
    assert record.talk_seconds == 0 and record.dials[0].whisper_declined
    assert record.verbs_executed[-1] == f"Dial:{BUYER_A}:completed:declined"


def test_number_status_callback_events(server, carrier):
    server.routes[VOICE] = xml(
        f'<Dial><Number statusCallback="/leg" statusCallbackEvent="initiated ringing answered completed">'
        f"{BUYER_A}</Number></Dial>"
    )
    record = carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(talk_seconds=42)})
    events = [s.form for s in server.to("/leg")]
    assert [e["CallStatus"] for e in events] == ["initiated", "ringing", "in-progress", "completed"]
    assert [e["SequenceNumber"] for e in events] == ["0", "1", "2", "3"]
    assert all(e["CallbackSource"] == "call-progress-events" for e in events)
    assert all(e["ParentCallSid"] == record.call_sid for e in events)
    assert events[-1]["CallDuration"] == "42"
    assert events[0]["Timestamp"].endswith("+0000")


def test_number_status_callback_defaults_to_completed_only(server, carrier):
    server.routes[VOICE] = xml(f'<Dial><Number statusCallback="/leg">{BUYER_A}</Number></Dial>')
    carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(answers=False)})
    events = [s.form for s in server.to("/leg")]
    assert [(e["CallStatus"], e["SequenceNumber"]) for e in events] == [("no-answer", "0")]


def test_caller_hangs_up_while_ringing(server, carrier):
    server.routes[VOICE] = xml(f'<Dial action="/done"><Number>{BUYER_A}</Number></Dial><Say>never</Say>')
    server.routes["/done"] = xml("<Say>ignored</Say>")
    record = carrier.place_call(
        OUR_NUMBER,
        CALLER,
        caller=CallerScript(hangs_up_after=5),
        buyers={BUYER_A: BuyerBehaviour(ring_seconds=12)},
    )
    done = server.to("/done")[0].form
    assert (done["DialCallStatus"], done["CallStatus"]) == ("canceled", "completed")
    assert record.hung_up_by == "caller" and record.duration == 5
    assert "ignored" not in record.said


def test_caller_hangup_caps_talk_time(server, carrier):
    server.routes[VOICE] = xml(f'<Say>Connecting you now</Say><Dial action="/done">{BUYER_A}</Dial>')
    record = carrier.place_call(
        OUR_NUMBER,
        CALLER,
        caller=CallerScript(hangs_up_after=60),
        buyers={BUYER_A: BuyerBehaviour(ring_seconds=8, talk_seconds=300)},
    )
    done = server.to("/done")[0].form
    assert done["DialCallDuration"] == str(60 - 2 - 8)
    assert record.talk_seconds == 50 and record.duration == 60


def test_time_limit_caps_talk_time(server, carrier):
    server.routes[VOICE] = xml(f'<Dial action="/done" timeLimit="30">{BUYER_A}</Dial>')
    carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(talk_seconds=300)})
    assert server.to("/done")[0].form["DialCallDuration"] == "30"


# --- recordings -----------------------------------------------------------------------------------


def test_dial_recording_callback_fields(server, carrier):
    server.routes[VOICE] = xml(
        f'<Dial action="/done" record="record-from-answer-dual" recordingStatusCallback="/rec">'
        f"<Number>{BUYER_A}</Number></Dial>"
    )
    record = carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(talk_seconds=64)})

    rec = server.to("/rec")[0].form
    sid = record.recording_sid
    assert sid and sid.startswith("RE") and len(sid) == 34
    assert rec["CallSid"] == record.call_sid and rec["RecordingSid"] == sid
    assert rec["RecordingUrl"] == f"https://api.twilio.com/2010-04-01/Accounts/{rec['AccountSid']}/Recordings/{sid}"
    assert (rec["RecordingStatus"], rec["RecordingDuration"], rec["RecordingChannels"]) == ("completed", "64", "2")
    assert (rec["RecordingSource"], rec["RecordingTrack"]) == ("DialVerb", "both")
    assert rec["RecordingStartTime"].endswith("+0000")
    done = server.to("/done")[0].form
    assert (done["RecordingSid"], done["RecordingDuration"]) == (sid, "64")
    assert server.paths().index("/done") < server.paths().index("/rec")  # normal order


def test_no_recording_when_not_bridged(server, carrier):
    server.routes[VOICE] = xml(
        f'<Dial action="/done" record="record-from-answer" recordingStatusCallback="/rec">{BUYER_A}</Dial>'
    )
    record = carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(answers=False)})
    assert server.to("/rec") == [] and "RecordingSid" not in server.to("/done")[0].form
    assert record.recording_sid is None


def test_record_verb_posts_the_recording_to_its_action(server, carrier):
    server.routes[VOICE] = xml('<Say>Leave a message</Say><Record action="/vm" maxLength="60"/>')
    server.routes["/vm"] = xml("<Say>Thanks</Say>")
    record = carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(message_seconds=20))
    vm = server.to("/vm")[0].form
    assert vm["RecordingDuration"] == "20" and vm["RecordingUrl"].endswith(vm["RecordingSid"])
    assert vm["Digits"] == ""
    assert record.said.endswith("Thanks")


def test_empty_recording_makes_no_action_request(server, carrier):
    server.routes[VOICE] = xml('<Record action="/vm"/><Say>No message</Say>')
    record = carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(message_seconds=0))
    assert server.to("/vm") == []
    assert record.verbs_executed == ["Record:empty", "Say:No message"]


def test_an_empty_recording_tells_a_callback_that_asked_for_absent(server, carrier):
    server.routes[VOICE] = xml(
        '<Record action="/vm" recordingStatusCallback="/rec" recordingStatusCallbackEvent="completed absent"/>'
        "<Say>No message</Say>"
    )
    record = carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(message_seconds=0))
    callback = server.to("/rec")[0].form
    assert (callback["RecordingStatus"], callback["RecordingDuration"]) == ("absent", "0")
    assert callback["CallSid"] == record.call_sid and callback["RecordingSid"].startswith("RE")
    assert "RecordingUrl" not in callback and not server.to("/vm") and record.said == "No message"


def test_caller_hanging_up_during_record_still_posts_the_action(server, carrier):
    server.routes[VOICE] = xml('<Record action="/vm"/><Say>never</Say>')
    server.routes["/vm"] = xml("<Say>ignored</Say>")
    record = carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(message_seconds=30, hangs_up_after=16))
    vm = server.to("/vm")[0].form
    assert (vm["Digits"], vm["RecordingDuration"], vm["CallStatus"]) == ("hangup", "15", "completed")
    assert record.hung_up_by == "caller" and "ignored" not in record.said


# --- delivery faults ------------------------------------------------------------------------------


def test_duplicate_delivery_sends_every_webhook_twice(server, carrier):
    server.routes[VOICE] = xml(
        f'<Dial action="/done" record="record-from-answer" recordingStatusCallback="/rec">'
        f'<Number statusCallback="/leg">{BUYER_A}</Number></Dial>'
    )
    calls = {"n": 0}

    def done(seen):
        calls["n"] += 1
        return 200, "text/xml", xml("<Say>first</Say>") if calls["n"] == 1 else xml("<Say>second</Say>")

    server.routes["/done"] = done
    record = carrier.place_call(OUR_NUMBER, CALLER, delivery=Delivery(duplicate=True))
    for path in (VOICE, "/done", "/rec", "/leg", STATUS):
        seen = server.to(path)
        assert len(seen) == 2, path
        assert seen[0].form == seen[1].form and seen[0].signature == seen[1].signature
    assert record.said == "second"  # the emulator follows the retry's answer


def test_reorder_sends_the_recording_before_the_dial_action(server, carrier):
    server.routes[VOICE] = xml(
        f'<Dial action="/done" record="record-from-answer" recordingStatusCallback="/rec">'
        f'<Number statusCallback="/leg" statusCallbackEvent="initiated ringing answered completed">'
        f"{BUYER_A}</Number></Dial>"
    )
    carrier.place_call(OUR_NUMBER, CALLER, delivery=Delivery(reorder=True))
    paths = server.paths()
    assert paths.index("/rec") < paths.index("/done")
    assert paths.count("/leg") == 4 and paths.count(STATUS) == 1
    # the async callbacks are held until the call is over, then shuffled
    assert all(paths.index("/done") < i for i, p in enumerate(paths) if p in ("/leg", STATUS))


def test_reorder_is_seeded(server):
    server.routes[VOICE] = xml(
        f'<Dial action="/done"><Number statusCallback="/leg" '
        f'statusCallbackEvent="initiated ringing answered completed">{BUYER_A}</Number></Dial>'
    )

    def order(seed):
        server.requests.clear()
        with Carrier(server.url, TOKEN, seed=seed) as c:
            c.place_call(OUR_NUMBER, CALLER, delivery=Delivery(reorder=True), call_sid="CA" + "1" * 32)
        return [(s.path, s.form.get("SequenceNumber")) for s in server.requests]

    assert order(3) == order(3)


def test_late_recording_arrives_after_the_final_status(server, carrier):
    server.routes[VOICE] = xml(
        f'<Dial action="/done" record="record-from-answer" recordingStatusCallback="/rec">{BUYER_A}</Dial>'
    )
    carrier.place_call(OUR_NUMBER, CALLER, delivery=Delivery(late_recording=True))
    paths = server.paths()
    assert paths.index(STATUS) < paths.index("/rec")


def test_status_first_sends_the_final_status_before_the_dial_action_when_the_caller_hangs_up(server, carrier):
    server.routes[VOICE] = xml(
        f'<Dial action="/done" record="record-from-answer" recordingStatusCallback="/rec">{BUYER_A}</Dial>'
    )
    record = carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(hangs_up_after=40),
                                delivery=Delivery(status_first=True))
    paths = server.paths()
    assert paths.count(STATUS) == 1 and paths.count("/done") == 1 and paths.count("/rec") == 1
    assert paths.index(STATUS) < paths.index("/done") < paths.index("/rec")
    status, action = server.to(STATUS)[0].form, server.to("/done")[0].form
    assert status["CallStatus"] == "completed" and action["DialBridged"] == "true"
    assert int(status["CallDuration"]) == 40 and record.hung_up_by == "caller"


def test_status_first_changes_nothing_when_the_call_ends_otherwise(server, carrier):
    server.routes[VOICE] = xml(f'<Dial action="/done">{BUYER_A}</Dial>')
    server.routes["/done"] = xml("<Hangup/>")
    carrier.place_call(OUR_NUMBER, CALLER, delivery=Delivery(status_first=True))  # the buyer hangs up first
    paths = server.paths()
    assert paths.index("/done") < paths.index(STATUS) and paths.count(STATUS) == 1


# --- errors and fallback --------------------------------------------------------------------------


def test_http_500_goes_to_the_fallback_url(server, carrier):
    server.routes[VOICE] = lambda seen: (500, "text/html", "<h1>Server Error</h1>")
    server.routes[FALLBACK] = xml("<Say>Sorry, try again later</Say><Hangup/>")
    record = carrier.place_call(OUR_NUMBER, CALLER)
    fb = server.to(FALLBACK)[0].form
    assert fb["ErrorCode"] == "11200"
    assert fb["ErrorUrl"] == server.url + VOICE
    assert fb["CallSid"] == record.call_sid and fb["From"] == CALLER
    assert record.used_fallback and not record.heard_error
    assert record.said == "Sorry, try again later"
    assert record.final_status == "completed"


def test_non_xml_answer_is_a_parse_failure(server, carrier):
    server.routes[VOICE] = lambda seen: (200, "text/xml", "this is not xml")
    carrier.place_call(OUR_NUMBER, CALLER)
    assert server.to(FALLBACK)[0].form["ErrorCode"] == "12100"


def test_leading_blank_line_is_a_parse_failure(server, carrier):
    server.routes[VOICE] = "\n" + xml("<Say>hi</Say>")
    carrier.place_call(OUR_NUMBER, CALLER)
    assert server.to(FALLBACK)[0].form["ErrorCode"] == "12100"


def test_wrong_content_type(server, carrier):
    server.routes[VOICE] = lambda seen: (200, "application/json", '{"ok": true}')
    carrier.place_call(OUR_NUMBER, CALLER)
    assert server.to(FALLBACK)[0].form["ErrorCode"] == "12300"


def test_action_failure_also_uses_the_fallback(server, carrier):
    server.routes[VOICE] = xml('<Gather numDigits="1" action="/broken"><Say>Press 1</Say></Gather>')
    server.routes["/broken"] = lambda seen: (404, "text/html", "not found")
    server.routes[FALLBACK] = xml("<Hangup/>")
    carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(digits=("1",)))
    fb = server.to(FALLBACK)[0].form
    assert (fb["ErrorCode"], fb["Digits"]) == ("11200", "1")
    assert fb["ErrorUrl"].endswith("/broken")


def test_timeout_is_11205_and_the_total_timeout_covers_the_retry(server):
    def slow(seen):
        time.sleep(0.6)
        return 200, "text/xml", xml("<Say>late</Say>")

    server.routes[VOICE] = slow
    server.routes[FALLBACK] = xml("<Say>fallback</Say>")
    with Carrier(server.url, TOKEN, timeout=0.2) as c:  # read and total 0.2 s: no time left to retry
        record = c.place_call(OUR_NUMBER, CALLER)
    assert len(server.to(VOICE)) == 1
    assert server.to(FALLBACK)[0].form["ErrorCode"] == "11205"
    assert record.said == "fallback"


def test_a_retry_happens_within_the_total_timeout(server):
    def slow(seen):
        time.sleep(0.6)
        return 200, "text/xml", xml("<Say>late</Say>")

    server.routes[VOICE] = xml("<Redirect>/slow#rt=200&amp;tt=1000</Redirect>")  # 0.2 s each, 1 s in all
    server.routes["/slow"] = slow
    server.routes[FALLBACK] = xml("<Say>fallback</Say>")
    with Carrier(server.url, TOKEN) as c:
        record = c.place_call(OUR_NUMBER, CALLER)
    assert len(server.to("/slow")) == 2  # the carrier's one retry
    assert server.to(FALLBACK)[0].form["ErrorCode"] == "11205"
    assert record.said == "fallback"


def test_fallback_failure_means_the_caller_hears_an_application_error(server, carrier):
    server.routes[VOICE] = lambda seen: (500, "text/plain", "boom")
    server.routes[FALLBACK] = lambda seen: (500, "text/plain", "boom")
    record = carrier.place_call(OUR_NUMBER, CALLER)
    assert record.heard_error and record.used_fallback
    assert record.error_codes == ["11200", "11200"]
    assert record.final_status == "completed"
    assert server.to(STATUS)  # the call still ends with its status callback


def test_loop_guard(server, carrier):
    server.routes[VOICE] = xml(f"<Redirect>{VOICE}</Redirect>")
    record = carrier.place_call(OUR_NUMBER, CALLER)
    assert len(server.to(VOICE)) == 50
    assert any("more than 50" in e for e in record.errors)


def test_unknown_verb_is_reported(server, carrier):
    server.routes[VOICE] = xml("<Pay/><Say>hi</Say>")
    record = carrier.place_call(OUR_NUMBER, CALLER)
    assert "unknown verb <Pay>" in record.issues
    assert record.said == "hi"


def test_unreachable_server_does_not_raise(server):
    with Carrier("http://127.0.0.1:9", TOKEN, timeout=1.0) as c:
        record = c.place_call(OUR_NUMBER, CALLER)
    assert record.heard_error and "11205" in record.error_codes


# --- Reject and the final status -----------------------------------------------------------------


def test_reject_busy(server, carrier):
    server.routes[VOICE] = xml('<Reject reason="busy"/>')
    record = carrier.place_call(OUR_NUMBER, CALLER)
    status = server.to(STATUS)[0].form
    assert record.rejected and record.final_status == "busy" and record.hung_up_by == "app"
    assert (status["CallStatus"], status["CallDuration"]) == ("busy", "0")


def test_reject_default_reason_is_no_answer(server, carrier):
    server.routes[VOICE] = xml("<Reject/>")
    record = carrier.place_call(OUR_NUMBER, CALLER)
    assert record.final_status == "no-answer"
    assert server.to(STATUS)[0].form["CallStatus"] == "no-answer"


def test_status_callback_at_the_end(server, carrier):
    server.routes[VOICE] = xml(f'<Say>Please hold</Say><Pause length="3"/><Dial>{BUYER_A}</Dial>')
    record = carrier.place_call(
        OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(ring_seconds=5, talk_seconds=61)}
    )
    status = server.to(STATUS)[0].form
    assert server.paths()[-1] == STATUS
    assert status["CallStatus"] == "completed"
    assert status["CallDuration"] == str(1 + 3 + 5 + 61) == str(record.duration)
    assert (status["SipResponseCode"], status["CallbackSource"], status["SequenceNumber"]) == (
        "200",
        "call-progress-events",
        "0",
    )
    assert status["Timestamp"].endswith("+0000")
    assert record.hung_up_by == "end"


def test_caller_hanging_up_before_the_answer_is_canceled(server, carrier):
    server.routes[VOICE] = xml("<Say>hi</Say>")
    record = carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(hangs_up_after=0))
    assert record.final_status == "canceled"
    assert server.to(STATUS)[0].form["CallStatus"] == "canceled"


def test_a_leading_pause_delays_the_pickup_and_is_not_in_the_call_duration(server, carrier):
    # Twilio's Pause page: as the first verb, Twilio waits that long before picking up the call.
    server.routes[VOICE] = xml('<Pause length="5"/><Say>Hello there</Say><Pause length="2"/>')
    record = carrier.place_call(OUR_NUMBER, CALLER)
    status = server.to(STATUS)[0].form
    assert (status["CallStatus"], status["CallDuration"]) == ("completed", "3")  # Say 1 s + the second Pause 2 s
    assert record.duration == 3 and record.final_status == "completed"


def test_a_caller_hanging_up_during_a_leading_pause_was_never_answered(server, carrier):
    server.routes[VOICE] = xml('<Pause length="5"/><Say>Hello there</Say>')
    record = carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(hangs_up_after=3))
    status = server.to(STATUS)[0].form
    assert (status["CallStatus"], status["CallDuration"]) == ("canceled", "0")
    assert record.final_status == "canceled" and record.hung_up_by == "caller" and not record.said


def test_answer_on_bridge_as_the_first_verb_answers_the_caller_only_at_the_bridge(server, carrier):
    # answerOnBridge: the caller's call keeps ringing until the dialled party is connected, whisper included.
    server.routes[VOICE] = xml(
        f'<Dial answerOnBridge="true" action="/done"><Number url="/whisper">{BUYER_A}</Number></Dial>'
    )
    server.routes["/whisper"] = xml("<Say>Call from the network</Say>")
    record = carrier.place_call(
        OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(ring_seconds=8, talk_seconds=40)}
    )
    status = server.to(STATUS)[0].form
    assert record.bridged and (status["CallStatus"], status["CallDuration"]) == ("completed", "40")
    assert record.duration == 40
    assert server.to("/done")[0].form["CallStatus"] == "in-progress"


def test_answer_on_bridge_unanswered_keeps_the_call_ringing_until_the_next_verb(server, carrier):
    server.routes[VOICE] = xml(f'<Dial answerOnBridge="true" timeout="20" action="/done">{BUYER_A}</Dial>')
    server.routes["/done"] = xml("<Say>Sorry nobody is available</Say>")
    record = carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(answers=False)})
    action = server.to("/done")[0].form
    assert (action["CallStatus"], action["DialCallStatus"]) == ("ringing", "no-answer")
    status = server.to(STATUS)[0].form
    assert (status["CallStatus"], status["CallDuration"]) == ("completed", "2")  # the Say alone
    assert record.duration == 2


def test_answer_on_bridge_caller_hanging_up_while_it_rings_was_never_answered(server, carrier):
    server.routes[VOICE] = xml(f'<Dial answerOnBridge="true" action="/done">{BUYER_A}</Dial>')
    record = carrier.place_call(
        OUR_NUMBER, CALLER, caller=CallerScript(hangs_up_after=10),
        buyers={BUYER_A: BuyerBehaviour(ring_seconds=25)},
    )
    action = server.to("/done")[0].form
    assert (action["CallStatus"], action["DialCallStatus"]) == ("canceled", "canceled")
    status = server.to(STATUS)[0].form
    assert (status["CallStatus"], status["CallDuration"]) == ("canceled", "0")
    assert record.final_status == "canceled" and record.hung_up_by == "caller"


# --- concurrency and pacing ------------------------------------------------------------------------


def test_one_carrier_from_many_threads(server, carrier):
    server.routes[VOICE] = xml('<Gather numDigits="5" action="/zip"><Say>ZIP</Say></Gather>')
    server.routes["/zip"] = xml(f'<Dial action="/done">{BUYER_A}</Dial>')
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        records = list(
            pool.map(
                lambda i: carrier.place_call(OUR_NUMBER, f"+1512555{i:04d}", caller=CallerScript(digits=("78701",))),
                range(40),
            )
        )
    assert len({r.call_sid for r in records}) == 40
    assert all(r.ok and r.talk_seconds == 90 for r in records), [r.errors for r in records if not r.ok]
    assert len(server.to("/done")) == 40


def test_time_scale_sleeps_simulated_time(server):
    server.routes[VOICE] = xml('<Pause length="10"/>')
    with Carrier(server.url, TOKEN, time_scale=0.02) as c:
        started = time.perf_counter()
        c.place_call(OUR_NUMBER, CALLER)
        assert time.perf_counter() - started >= 0.2


# --- review findings (2026-12-06): what the emulator did unlike the carrier ------------------------------


def test_https_requests_are_signed_without_the_port(server):
    with Carrier(server.url, TOKEN, public_url="https://calls.example.com:8443", seed=1) as c:
        server.routes[VOICE] = xml("<Say>hi</Say>")
        c.place_call(OUR_NUMBER, CALLER)
    seen = server.to(VOICE)[0]
    signed = RequestValidator(TOKEN).compute_signature
    assert seen.signature == signed("https://calls.example.com" + VOICE, seen.form)
    assert seen.signature != signed("https://calls.example.com:8443" + VOICE, seen.form)


def test_plain_http_requests_are_signed_with_the_port(server):
    with Carrier(server.url, TOKEN, public_url="http://calls.example.com:8080", seed=1) as c:
        server.routes[VOICE] = xml("<Say>hi</Say>")
        c.place_call(OUR_NUMBER, CALLER)
    seen = server.to(VOICE)[0]
    assert seen.signature == RequestValidator(TOKEN).compute_signature("http://calls.example.com:8080" + VOICE,
                                                                       seen.form)


def test_gather_stops_at_num_digits_before_the_finish_key(server, carrier):
    cases = {("1", "12#"): ("1", ""), ("1", "1#"): ("1", ""), ("5", "787"): ("787", "#"),
             ("3", "12#45"): ("12", "#")}
    for (num_digits, typed), expected in cases.items():
        server.requests.clear()
        server.routes[VOICE] = xml(f'<Gather numDigits="{num_digits}" action="/g"><Say>Go</Say></Gather>')
        carrier.place_call(OUR_NUMBER, CALLER, caller=CallerScript(digits=(typed,)))
        form = server.to("/g")[0].form
        assert (form["Digits"], form.get("FinishedOnKey", "")) == expected, (num_digits, typed)


def test_a_leg_that_answers_with_the_winner_is_canceled(server, carrier):
    legs = "".join(f'<Number statusCallback="/leg" statusCallbackEvent="answered completed">{n}</Number>'
                   for n in (BUYER_A, BUYER_B))
    server.routes[VOICE] = xml(f'<Dial action="/act">{legs}</Dial>')
    carrier.place_call(OUR_NUMBER, CALLER)  # both buyers answer after the same ring
    statuses = {seen.form["CallStatus"] for seen in server.to("/leg")}
    assert statuses <= {"in-progress", "completed", "canceled"} and "canceled" in statuses


def test_the_answered_legs_duration_includes_its_whisper(server, carrier):
    server.routes[VOICE] = xml(f'<Dial action="/act"><Number url="/whisper" statusCallback="/leg" '
                               f'statusCallbackEvent="completed">{BUYER_A}</Number></Dial>')
    server.routes["/whisper"] = xml("<Say>" + "a new lead from the south Austin campaign " * 4 + "</Say>")
    record = carrier.place_call(OUR_NUMBER, CALLER, buyers={BUYER_A: BuyerBehaviour(talk_seconds=60)})
    whisper = record.dials[0].whisper_seconds
    assert whisper > 0
    assert server.to("/leg")[0].form["CallDuration"] == str(60 + whisper)


def test_a_url_on_our_host_with_its_default_port_written_reaches_the_server(server):
    server.routes[VOICE] = xml("<Redirect>https://calls.example.com:443/r2?x=1</Redirect>")
    server.routes["/r2"] = xml("<Say>redirected</Say>")
    with Carrier(server.url, TOKEN, public_url="https://calls.example.com", seed=1) as c:
        record = c.place_call(OUR_NUMBER, CALLER)
    assert record.said == "redirected" and server.to("/r2")[0].query == {"x": "1"}


def test_a_url_with_an_impossible_port_is_a_fetch_failure_not_an_emulator_crash(server, carrier):
    server.routes[VOICE] = xml("<Redirect>http://127.0.0.1:99999/r2</Redirect>")
    server.routes[FALLBACK] = xml("<Say>fallback</Say>")
    record = carrier.place_call(OUR_NUMBER, CALLER)
    assert not any("emulator exception" in error for error in record.errors), record.errors
    assert record.used_fallback and record.said == "fallback"


def test_a_byte_order_mark_then_whitespace_is_a_parse_error(server, carrier):
    server.routes[VOICE] = lambda seen: (200, "text/xml", "\ufeff\r\n<Response><Say>hi</Say></Response>")
    server.routes[FALLBACK] = xml("<Say>fallback</Say>")
    record = carrier.place_call(OUR_NUMBER, CALLER)
    assert record.error_codes[:1] == ["12100"] and record.said == "fallback"


def test_a_url_on_our_host_outside_the_public_base_path_is_not_rewritten(server):
    with Carrier(server.url, TOKEN, public_url="https://cb.test/app", seed=1) as c:
        assert c._transport_url("https://cb.test/app/carriers/twilio/voice") == server.url + "/carriers/twilio/voice"
        assert c._transport_url("https://cb.test:443/app?x=1") == server.url + "?x=1"
        assert c._transport_url("https://cb.test/apples/x") == "https://cb.test/apples/x"
