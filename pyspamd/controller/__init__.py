"""The controller: HTTP API, Prometheus metrics and the admin web page (port 11334).

A process of its own under the milter's master (or alone: `pyspamd controller`), so milter
workers never wait on it. Counters and history come from the storage backend, written by
every worker (pyspamd/stats), so all workers and hosts show one picture.
"""
