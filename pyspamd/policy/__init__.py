"""Admin policy: maps (Postfix access and regexp tables, IP/CIDR and domain lists),
greylisting and rate limits. Checks in pyspamd/checks/ use these; nothing here scans."""
