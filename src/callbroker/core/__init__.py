"""callbroker's pure core: routing, qualification, schedules, geography and money.

Nothing in this package imports Django; the shell maps its rows to ``core.model`` values, asks the
core to decide, and stores the answer. Import submodules directly (``from callbroker.core import
routing``); this file deliberately imports nothing.
"""
