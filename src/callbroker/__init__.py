"""callbroker — an open-source pay-per-call platform."""

__version__ = "0.1.0"

#: The auth token a development installation signs with when ``TWILIO_AUTH_TOKEN`` is not set (the demo's;
#: printed by ``make run``), and the one ``callbroker sim`` signs with then. Production refuses to start
#: with it (settings.py): it is public.
DEMO_AUTH_TOKEN = "callbroker-demo-auth-token"  # noqa: S105 - public by design
