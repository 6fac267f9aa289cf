"""What the tests share besides fixtures (those are in conftest.py): message builders, the
repository's paths, and the helpers that start real servers (Postfix, Redis, slapd, Knot
and Unbound, the pyspamd daemon and controller) on free ports."""
