"""The quarantine pyspamd keeps: held messages on disk with an index, and their release."""
