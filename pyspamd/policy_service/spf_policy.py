"""SPF at RCPT time as policyd-spf decides it: the same engine (spf-engine, which
python-policyd-spf runs on), the same policyd-spf.conf read unchanged, the same answers
(`550 5.7.23 ...` on Fail, `PREPEND Received-SPF: ...` otherwise, defer on TempError when
the file says so).

policyd-spf's loop around the engine is a small piece of text formatting; it is done here the
same way, so an answer is identical to policyd-spf's for the same request and DNS. The
engine's entry points have a leading underscore (`_spfcheck`, `_readConfigFile`): they are
the ones policyd-spf's own script calls, and spf-engine has no other. The
engine's lookups go through pyspamd's resolver ([dns] nameservers, its cache), on the spf
threads of pyspamd.auth.spf. Each result is also written to the store for a few minutes,
keyed by client address, HELO name and sender, so the milter reuses it (spf_cache.py)
instead of asking DNS again at end of message.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from dataclasses import dataclass, field
from typing import Any

import spf_engine
import spf_engine.policydspfsupp as supp

from pyspamd.auth.spf import bound_dns, executor
from pyspamd.dns import MessageDns, Resolver

log = logging.getLogger("pyspamd.policy")

_MAX_INSTANCES = 1000  # policyd-spf remembers every message of its connection; we, this many
# What policyd-spf leaves as sent; it lower-cases every other attribute.
_AS_SENT = ("protocol_state", "protocol_name", "queue_id")


def load_spf_config(path: str) -> dict[str, Any]:
    """policyd-spf's settings: its defaults, with the file's lines over them."""
    defaults = copy.deepcopy(supp.defaultConfigData)
    if not path:
        return defaults
    return dict(supp._readConfigFile(path, defaults))


@dataclass(frozen=True, slots=True)
class SpfAnswer:
    action: str  # the whole answer: "550 5.7.23 ...", "prepend Received-SPF: ...", "dunno"
    result: str = ""  # pass, fail, softfail, neutral, none, temperror, permerror; "" if none
    identity: str = ""  # mailfrom or helo
    header: str = ""  # the Received-SPF value, without the name
    explanation: str = ""

    @property
    def prepends(self) -> bool:
        return self.action.lower().startswith("prepend ")


@dataclass
class SpfPolicy:
    config: dict[str, Any]
    resolver: Resolver
    timeout: float
    instances: dict[str, Any] = field(default_factory=dict)  # spf-engine's per-message memo

    async def check(self, attrs: dict[str, str],
                    instances: dict[str, Any] | None = None) -> SpfAnswer:
        loop = asyncio.get_running_loop()
        budget = min(self.timeout, float(self.config.get("Lookup_Time") or self.timeout))
        lookups = self.resolver.for_message(budget)
        memo = self.instances if instances is None else instances
        if len(memo) > _MAX_INSTANCES:
            memo.clear()
        return await loop.run_in_executor(executor(), self._check, lookups, loop, attrs, memo)

    def _check(self, lookups: MessageDns, loop: asyncio.AbstractEventLoop,
               attrs: dict[str, str], memo: dict[str, Any]) -> SpfAnswer:
        with bound_dns(lookups, loop):
            return self._decide(attrs, memo)

    def _decide(self, attrs: dict[str, str], memo: dict[str, Any]) -> SpfAnswer:
        data = {k: (v if k in _AS_SENT else v.lower()) for k, v in attrs.items()}
        conf = dict(self.config)
        if conf.get("Mock"):
            return SpfAnswer("dunno mock header field that should be ignored")
        if not data.get("recipient"):
            data["recipient"] = "none"
        peruser, user_conf = False, {}
        if conf.get("Per_User"):
            import spf_engine.policydspfuser as peruser_mod

            user_conf, peruser = peruser_mod._datacheck(conf, data.get("recipient"))
        elif conf.get("Hide_Receiver") != "No":
            data["recipient"] = "<UNKNOWN>"
        elif data["recipient"] != "none" and "@" in data["recipient"]:
            data["recipient"] = data["recipient"].split("@")[1]
        value, reason, _, iserror = spf_engine._spfcheck(data, memo, conf, peruser, user_conf)
        test_only = (user_conf if peruser else conf).get("TestOnly")
        if test_only == 0 and value != "prepend":
            value = reason = None
        if conf.get("SPF_Enhanced_Status_Codes") == "No":
            reject, defer = "550", "defer_if_permit"
        elif iserror:
            reject, defer = "550 5.7.24", "defer_if_permit 4.7.24"
        else:
            reject, defer = "550 5.7.23", "defer_if_permit 4.7.24"
        found = memo.get(data.get("instance", ""))
        result, identity, explanation = "", "", ""
        if isinstance(found, list) and len(found) >= 3 and found[0] != "N/A":
            result, explanation, identity = str(found[0]).lower(), str(found[1]), str(found[2])
        if value == "reject":
            action = f"{reject} {reason}"
        elif value == "prepend":
            if conf.get("Prospective") or conf.get("Header_Type") == "None":
                action = "dunno"
            else:
                action = f"prepend {reason}"
        elif value == "defer":
            action = f"{defer} {reason}"
        elif value == "warn":
            action = f"warn {reason}"
        elif value == "result_only":
            action = str(reason)
        else:
            action = "dunno"
        header = ""
        if value == "prepend" and isinstance(reason, str) and reason.startswith(
                "Received-SPF: "):
            header = reason[len("Received-SPF: "):]
        return SpfAnswer(action, result, identity, header, explanation)
