"""Scan statistics and history in the storage backend, written by every process that scans
(milter workers, the controller) and read by the controller and `pyspamc stat/history`.

Writers batch in memory and flush once a second (recorder.py), so the milter pays an append
per message, not a round trip; readers sum what all processes and hosts wrote (reader.py).
"""
