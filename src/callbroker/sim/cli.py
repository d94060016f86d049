"""``callbroker sim …``: drive a running callbroker server with the carrier emulator.

``callbroker sim traffic --url URL`` plans a day of calls for a network file and places them,
printing one line per call and a summary; ``callbroker sim call --url URL --to NUMBER`` places a
single call and prints its transcript. Neither needs Django or the database: they only speak HTTP
to the server, like the carrier does.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import signal
import sys
import threading
from pathlib import Path

from callbroker import DEMO_AUTH_TOKEN
from callbroker.arguments import above_zero, at_least, given, web_address
from callbroker.core.accounts import account_sid, account_sids, is_twilio_account_sid
from callbroker.words import counted

DEMO_NETWORK = Path(__file__).resolve().parents[1] / "network" / "demo" / "demo-network.yaml"
TELNYX_KEY_VARIABLE = "CALLBROKER_SIM_TELNYX_PRIVATE_KEY"


def add_arguments(subparsers) -> None:
    """Add the ``traffic`` and ``call`` sub-commands to an ``argparse`` sub-parser group."""
    traffic = subparsers.add_parser("traffic", help="Place a realistic day of calls against a server.")
    _common(traffic)
    traffic.add_argument("--calls", type=at_least(1, int), default=100, help="How many calls (default 100).")
    traffic.add_argument("--rate", type=above_zero, default=None,
                         help="New calls per second (default: as fast as possible).")
    traffic.add_argument("--concurrency", type=at_least(1, int), default=8,
                         help="Calls in flight at once (default 8).")
    traffic.add_argument(
        "--network", type=given("the network file's path", Path), default=None,
        help=f"Network YAML file (default: the packaged demo, {DEMO_NETWORK.name})."
    )
    traffic.add_argument("--seed", type=int, default=1, help="Seed of the plan and the emulator (default 1).")
    _delivery_arguments(traffic)
    traffic.add_argument("--json", action="store_true", help="One JSON object per call, then the summary.")
    traffic.set_defaults(sim_handler=_traffic)

    call = subparsers.add_parser("call", help="Place one call and print its transcript.")
    _common(call)
    call.add_argument("--to", required=True, type=given("the tracking number to call"),
                      help="The tracking number called (E.164).")
    call.add_argument("--from", dest="from_", default="+15125551234", help="Caller ID; 'anonymous' withholds it.")
    call.add_argument("--zip", default=None, help="The carrier's FromZip (default: absent).")
    call.add_argument("--state", default=None, help="The carrier's FromState.")
    call.add_argument("--stir", default="TN-Validation-Passed-A", help="StirVerstat ('' to leave it out).")
    call.add_argument("--digits", default="", help="Keypad answers to successive Gathers, comma-separated: 78701,1")
    call.add_argument("--hang-up-after", type=at_least(0, int), default=None,
                      help="Caller hangs up after N simulated seconds.")
    answer = call.add_mutually_exclusive_group()
    answer.add_argument("--buyer-answers", dest="answers", action="store_true", default=True,
                        help="Every buyer answers (default).")
    answer.add_argument("--no-answer", dest="answers", action="store_false", help="No buyer answers.")
    call.add_argument("--ring", type=at_least(0, int), default=6, help="Buyer ring seconds (default 6).")
    call.add_argument("--talk", type=at_least(0, int), default=90, help="Buyer talk seconds (default 90).")
    call.add_argument("--declines-whisper", action="store_true", help="Buyers decline the whisper.")
    call.add_argument("--seed", type=int, default=None)
    _delivery_arguments(call)
    call.add_argument("--status-first", action="store_true",
                      help="When the caller hangs up during a Dial (--hang-up-after), send the final status "
                           "before the Dial action.")
    call.add_argument("--json", action="store_true", help="Print the call record as JSON.")
    call.set_defaults(sim_handler=_call)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", required=True,
                        type=web_address("the server's base URL, e.g. http://127.0.0.1:8000"),
                        help="Base URL of the callbroker server, e.g. http://127.0.0.1:8000")
    parser.add_argument("--public-url", default=None,
                        type=web_address("the URL the server signs against, or leave the option out for --url's"),
                        help="Public URL the server signs against (default: --url).")
    parser.add_argument("--token", default=None,
                        type=given("the auth token, or leave the option out for TWILIO_AUTH_TOKEN's (else "
                                   "the demo's)"),
                        help="Twilio auth token (default: the account's in $TWILIO_ACCOUNT_TOKENS, else "
                             "$TWILIO_AUTH_TOKEN, else the demo's token, as the server has it).")
    parser.add_argument("--account-sid", default=None,
                        type=given("the AccountSid to send, or leave the option out for "
                                   "TWILIO_ACCOUNT_SID's"),
                        help="AccountSid of the calls (default: the first of $TWILIO_ACCOUNT_SID, the "
                             "account the server takes, else the first of $TWILIO_ACCOUNT_TOKENS, else the "
                             "emulator's own).")
    parser.add_argument("--time-scale", type=at_least(0), default=0.0,
                        help="Real seconds per simulated second (default 0: no waiting).")
    parser.add_argument("--carrier", choices=("twilio", "telnyx"), default="twilio",
                        help="Whose webhooks to play (default twilio). telnyx: Telnyx TeXML's, signed with Ed25519 "
                             "(--telnyx-key), with its CallSids (v3:…) and STIR parameters.")
    parser.add_argument("--telnyx-key", default=None,
                        type=given("the Telnyx private key (base64 of its 32-byte seed), or leave the option out "
                                   f"for ${TELNYX_KEY_VARIABLE}'s"),
                        help=f"With --carrier telnyx: the Ed25519 private key that signs, base64 of its 32-byte seed "
                             f"(default: ${TELNYX_KEY_VARIABLE}); the server's TELNYX_PUBLIC_KEY is its public key.")


def _delivery_arguments(parser: argparse.ArgumentParser) -> None:
    """The callback misbehaviours a carrier is allowed (``emulator.Delivery``): ``traffic`` and ``call``."""
    parser.add_argument("--duplicates", action="store_true", help="Deliver every webhook twice.")
    parser.add_argument("--reorder", action="store_true", help="Shuffle asynchronous callbacks.")
    parser.add_argument("--late-recording", action="store_true",
                        help="Send recording callbacks after the call's final status callback.")


def _delivery(args: argparse.Namespace):
    from callbroker.sim.emulator import Delivery

    return Delivery(duplicate=args.duplicates, reorder=args.reorder, late_recording=args.late_recording,
                    status_first=getattr(args, "status_first", False))


def run(args: argparse.Namespace) -> int:
    """Run the sub-command chosen in ``args``; returns the process exit code."""
    handler = getattr(args, "sim_handler", None)
    if handler is None:
        print("callbroker sim: choose a command: traffic or call", file=sys.stderr)
        return 2
    # The server's own rule (settings.py): the account's token of TWILIO_ACCOUNT_TOKENS when that is set, else
    # TWILIO_AUTH_TOKEN, else the demo's token.
    token = args.token or _account_token(args) or os.environ.get("TWILIO_AUTH_TOKEN") or DEMO_AUTH_TOKEN
    args.telnyx_seed = None
    if getattr(args, "carrier", "twilio") == "telnyx":
        problem = _telnyx_seed(args)
        if problem:
            print(f"callbroker sim: {problem}", file=sys.stderr)
            return 2
    elif getattr(args, "telnyx_key", None):
        print("callbroker sim: --telnyx-key signs Telnyx's webhooks: give --carrier telnyx too", file=sys.stderr)
        return 2
    return handler(args, token)


def _telnyx_seed(args: argparse.Namespace) -> str:
    """Reads the Telnyx private key into ``args.telnyx_seed``; what is wrong with it, or ""."""
    text = args.telnyx_key or os.environ.get(TELNYX_KEY_VARIABLE, "").strip()
    named = "--telnyx-key" if args.telnyx_key else TELNYX_KEY_VARIABLE
    if not text:
        return (f"--carrier telnyx signs with an Ed25519 private key: give --telnyx-key or set {TELNYX_KEY_VARIABLE} "
                "(base64 of its 32-byte seed; the server's TELNYX_PUBLIC_KEY is its public key)")
    try:
        seed = base64.b64decode(text.strip(), validate=True)
    except ValueError:
        return f"{named} is not base64 (give base64 of the key's 32-byte seed)"
    if len(seed) != 32:
        return f"{named} is {len(seed)} bytes once decoded; an Ed25519 private key's seed is 32"
    args.telnyx_seed = seed
    return ""


def _carrier(args: argparse.Namespace, token: str, seed: int | None):
    from callbroker.sim.emulator import Carrier

    account = _account_sid(args)
    return Carrier(args.url, token, public_url=args.public_url, time_scale=args.time_scale, seed=seed,
                   telnyx_key=getattr(args, "telnyx_seed", None), **({"account_sid": account} if account else {}))


def _account_sid(args: argparse.Namespace) -> str | None:
    """``--account-sid``, else the first account of ``TWILIO_ACCOUNT_SID``, else the first of
    ``TWILIO_ACCOUNT_TOKENS``: a server that checks the AccountSid (settings.py) takes only its own accounts'
    webhooks, as it takes only its tokens' signatures (playing Telnyx, its first that is not a Twilio SID,
    ``AC…``: Telnyx's are UUIDs; playing Twilio with ``TWILIO_ACCOUNT_TOKENS`` set, its first that has a token
    there: a Telnyx account named first in ``TWILIO_ACCOUNT_SID`` has none, and its webhooks signed as Twilio
    signs are all refused). The accounts of the environment named as the carrier does (``core.accounts``, as
    the server reads them: one copied in upper case is the same account); ``--account-sid`` as given. None:
    the emulator's own."""
    if args.account_sid:
        return args.account_sid
    pinned = list(account_sids(os.environ.get("TWILIO_ACCOUNT_SID", "")))
    if getattr(args, "carrier", "twilio") == "telnyx":
        pinned = [sid for sid in pinned if not is_twilio_account_sid(sid)] + pinned
    else:
        tokens = _account_tokens()
        pinned = [sid for sid in pinned if sid in tokens] + pinned if pinned else list(tokens)
    return pinned[0] if pinned else None


def _account_tokens() -> dict[str, str]:
    """``TWILIO_ACCOUNT_TOKENS`` of the environment, each account (as carriers send it, as settings.py reads
    it: ``core.accounts.account_sid``) with its first token (the new one of a rotation). Read leniently: the
    server refuses a malformed value at start, and an entry skipped here only leaves the flat token to sign."""
    accounts: dict[str, str] = {}
    for entry in os.environ.get("TWILIO_ACCOUNT_TOKENS", "").split(","):
        account, _colon, tokens = (part.strip() for part in entry.partition(":"))
        token = tokens.split("|")[0].strip()
        if account and token:
            accounts.setdefault(account_sid(account), token)
    return accounts


def _account_token(args: argparse.Namespace) -> str:
    """The token of the account the calls name (:func:`_account_sid`, in any case) in ``TWILIO_ACCOUNT_TOKENS``,
    or "": set, that alone verifies the server's webhooks signed as Twilio signs, ``TWILIO_AUTH_TOKEN`` none of
    them."""
    return _account_tokens().get(account_sid(_account_sid(args) or ""), "")


# ---------------------------------------------------------------------------------------------


def _traffic(args: argparse.Namespace, token: str) -> int:
    from callbroker.network.parsing import NetworkError
    from callbroker.sim.network_file import NetworkFileError, read_network_file
    from callbroker.sim.traffic import generate_day, run_traffic

    path = args.network or DEMO_NETWORK
    try:
        network = read_network_file(path)
        planned = generate_day(network, calls=args.calls, seed=args.seed)
    except NetworkFileError as exc:
        missing = "" if args.network or path.exists() else \
            " (the packaged demo is missing; pass --network FILE)"
        print(f"callbroker sim: {exc}{missing}", file=sys.stderr)
        return 2
    except NetworkError as exc:  # every problem has its place in the file: the first, and how many more
        first, more = exc.problems[0], len(exc.problems) - 1
        print(f"callbroker sim: network file {path}: {first}"
              + (f" (and {counted(more, 'more problem')})" if more else ""), file=sys.stderr)
        return 2
    if not planned:
        print(f"callbroker sim: network file {path}: no active tracking number to call", file=sys.stderr)
        return 2
    delivery = _delivery(args)
    stop = threading.Event()  # no new call: the reader has gone, or a first Ctrl-C
    interrupted = threading.Event()

    def on_done(call, record) -> None:
        try:
            if args.json:
                print(json.dumps(call_json(call, record)), flush=True)
            else:
                print(call_line(call, record), flush=True)
        except BrokenPipeError:  # piped into a reader that stopped (`| head`): place no more calls
            stop.set()
            raise

    with _carrier(args, token, args.seed) as carrier, _first_ctrl_c_stops(stop, interrupted):
        try:
            stats = run_traffic(carrier, planned, rate=args.rate, concurrency=args.concurrency,
                                on_done=on_done, delivery=delivery, stop=stop, follow_day=True)
        except KeyboardInterrupt:  # the second Ctrl-C: leave the calls in flight as they are, now
            print("\ncallbroker: interrupted", file=sys.stderr)
            sys.stdout.flush()
            sys.stderr.flush()
            # The emulator's threads are playing the calls in flight: a normal exit would wait for them
            # (the thread pool joins its threads at exit) and go on printing their lines meanwhile.
            os._exit(130)
    if args.json:
        print(json.dumps({"summary": stats.as_dict()}))
    else:
        print(stats.summary())
        for problem in stats.problems:
            print(f"  problem: {problem}")
    _explain_refusals(args, stats.problems)
    if interrupted.is_set() and stats.calls < len(planned):  # once the last call is placed, nothing to stop
        sys.stdout.flush()
        print(f"callbroker: interrupted ({stats.calls} of {counted(len(planned), 'call')} placed)",
              file=sys.stderr)
        return 130
    return 0 if stats.calls and stats.errors == 0 else 1


@contextlib.contextmanager
def _first_ctrl_c_stops(stop: threading.Event, interrupted: threading.Event):
    """While traffic runs, the first Ctrl-C sets ``stop`` (no new call is placed; the calls in flight finish
    and are shown) and ``interrupted``, and says so in one line; a second one raises ``KeyboardInterrupt``.
    Outside the main thread (:func:`run` called from another thread) no handler can be set: nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    from callbroker.sim.traffic import set_from_signal_handler

    def first(signum, frame) -> None:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a second Ctrl-C: KeyboardInterrupt
        interrupted.set()  # never waited on: no lock of it is held here
        set_from_signal_handler(stop)
        print("\ncallbroker: stopping: no new calls; the calls in flight finish first (Ctrl-C again to stop "
              "now)", file=sys.stderr, flush=True)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous if previous is not None else signal.default_int_handler)


def call_line(call, record) -> str:
    """One line per call: time, tracking number, campaign, caller ZIP, dials, talk, status."""
    zip_text = call.caller_zip or "-"
    if call.params.get("FromZip"):
        zip_text += " (carrier)"
    elif call.caller_zip and call.caller_zip in call.script.digits:
        zip_text += " (typed)"
    dials = " -> ".join(
        f"{d.number} {'bridged' if d.bridged else d.status}" + (" (whisper declined)" if d.whisper_declined else "")
        for d in record.dials
    ) or "no dial"
    tags = f" [{', '.join(call.tags)}]" if call.tags else ""
    problem = " ERROR" if not record.ok else ""
    return (f"{call.clock} {call.tracking_number} {call.campaign:<24} zip {zip_text:<16} {dials}; "
            f"talk {record.talk_seconds}s; {record.final_status}{tags}{problem}")


def call_json(call, record) -> dict:
    return {
        "time": call.clock,
        "tracking_number": call.tracking_number,
        "campaign": call.campaign,
        "caller": call.caller,
        "caller_zip": call.caller_zip,
        "tags": list(call.tags),
        **record_json(record),
    }


def record_json(record) -> dict:
    return {
        "call_sid": record.call_sid,
        "final_status": record.final_status,
        "duration": record.duration,
        "talk_seconds": record.talk_seconds,
        "dials": [
            {"number": d.number, "status": d.status, "bridged": d.bridged, "duration": d.duration,
             "ring_seconds": d.ring_seconds, "whisper_declined": d.whisper_declined}
            for d in record.dials
        ],
        "verbs": record.verbs_executed,
        "used_fallback": record.used_fallback,
        "heard_error": record.heard_error,
        "rejected": record.rejected,
        "hung_up_by": record.hung_up_by,
        "recording_sid": record.recording_sid,
        "errors": record.errors,
        "issues": record.issues,
        "webhooks": len(record.requests),
    }


def _call(args: argparse.Namespace, token: str) -> int:
    from callbroker.sim.emulator import BuyerBehaviour, CallerScript

    if args.status_first and args.hang_up_after is None:
        print("callbroker sim: --status-first applies when the caller hangs up during a Dial: "
              "give --hang-up-after N too", file=sys.stderr)
        return 2
    params: dict[str, str] = {}
    if args.zip is not None:
        params["FromZip"] = args.zip
    if args.state is not None:
        params["FromState"] = args.state
    if args.stir:
        params["StirVerstat"] = args.stir
    digits = tuple(d.strip() for d in args.digits.split(",")) if args.digits else ()
    behaviour = BuyerBehaviour(answers=args.answers, ring_seconds=args.ring, talk_seconds=args.talk,
                               declines_whisper=args.declines_whisper)
    caller = None if args.from_.lower() in ("anonymous", "") else args.from_
    with _carrier(args, token, args.seed) as carrier:
        record = carrier.place_call(
            args.to,
            caller,
            caller=CallerScript(digits=digits, hangs_up_after=args.hang_up_after),
            params=params,
            buyers=lambda number: behaviour,
            delivery=_delivery(args),
        )
    if args.json:
        print(json.dumps(record_json(record), indent=2))
    else:
        print(record.transcript())
        if record.said:
            print(f"  caller heard: {record.said}")
    _explain_refusals(args, record.errors)
    return 0 if record.ok else 1


_REFUSED = re.compile(r"\b403\b")


def _explain_refusals(args: argparse.Namespace, problems: list[str]) -> None:
    """One line on standard error when the server answered 403: a signature (or an AccountSid) it doesn't
    take. The problems alone said ``HTTP 403``, and a production server signs against its
    ``CALLBROKER_PUBLIC_URL``, not the address the emulator reaches it at: driven with ``--url`` alone, as
    the README shows, every call of such a server failed with nothing saying why."""
    if not any(_REFUSED.search(problem) for problem in problems):
        return
    if getattr(args, "carrier", "twilio") == "telnyx":
        print("callbroker sim: the server refused webhooks with 403 (signature or AccountSid): they were signed "
              "as Telnyx signs, with the private key of --telnyx-key or $" + TELNYX_KEY_VARIABLE + ". The server's "
              "TELNYX_PUBLIC_KEY must be its public key (and its clock within 300 s of this one); with "
              "TWILIO_ACCOUNT_SID set, give one of its accounts as --account-sid. Its log says which "
              "('refused: …').", file=sys.stderr)
        return
    signed = args.public_url or args.url
    account = _account_sid(args)
    token = "--token" if args.token else (f"{account}'s token of TWILIO_ACCOUNT_TOKENS" if _account_token(args)
                                          else "TWILIO_AUTH_TOKEN" if os.environ.get("TWILIO_AUTH_TOKEN")
                                          else "the demo's token")
    print(f"callbroker sim: the server refused webhooks with 403 (signature or AccountSid): they were signed "
          f"for {signed} with {token}. A server with CALLBROKER_PUBLIC_URL set checks against that URL: "
          f"give it as --public-url; and its TWILIO_AUTH_TOKEN as --token, its account as --account-sid "
          f"(with TWILIO_ACCOUNT_TOKENS set, that account's token as --token). "
          f"Its log says which ('refused: …').", file=sys.stderr)
