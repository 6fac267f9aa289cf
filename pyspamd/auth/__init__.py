"""Sender authentication: SPF (spf.py), DKIM verification (dkim_verify.py) and signing
(dkim_sign.py), ARC (arc.py), DMARC (dmarc.py) and the headers that report them
(headers.py). All DNS goes through pyspamd.dns."""
