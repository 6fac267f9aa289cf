"""The greylisting setup the two Postfix greylist suites share: a short delay, and action
thresholds far above what their messages score unless a marker rule adds to it."""

from __future__ import annotations

DELAY = 2.0
CONFIG = """
[actions]
greylist = 40.0
add_header = 60.0
reject = 150.0
[storage]
path = "{store}"
[greylist]
delay = {delay}
"""
