"""Hostile input: generated carrier webhooks, malformed HTTP and floods against every carrier endpoint.

``strategies.py`` holds the generators and the registry of endpoints (discovered from
``callbroker.carriers.urls``); ``conftest.py`` the fixtures and the end-of-run figures.
"""
