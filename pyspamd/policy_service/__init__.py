"""The Postfix policy delegation service (SMTPD_POLICY_README): decisions at RCPT time,
before the client sends the message (greylisting, SPF, maps, rate limits, DNSBLs)."""
