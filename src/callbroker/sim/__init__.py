"""Carrier emulator and traffic generator: Twilio's side of a call, played over real HTTP.

``callbroker.sim.emulator.Carrier`` places simulated inbound calls against a running callbroker
server exactly as the carrier would (signed form posts, TwiML execution, Dial legs, whispers,
recordings, status callbacks, fallback on errors); ``callbroker.sim.traffic`` plans a realistic
day of calls from a network description and drives them through a ``Carrier``;
``callbroker.sim.cli`` is the ``callbroker sim …`` command. See docs/emulator.md.
"""
