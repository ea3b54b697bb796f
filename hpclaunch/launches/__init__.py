"""Launches: submit = render + transport + scheduler + record; status; cancel; logs.

A launch is one ``hpclaunch submit``: a site, a worker count, and the chunks
(job arrays or plain jobs) it became, each with the scheduler job ID it got.
"""
