"""Configuration: one TOML file; every option has a default (see pyspamd.toml.example).

Where the file is: `--config PATH`, else $PYSPAMD_CONFIG, else /etc/pyspamd/pyspamd.toml if
it exists, else built-in defaults. Errors name the file, the line and what to write instead.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyspamd.storage.backends import storage_errors

DEFAULT_CONFIG_PATH = Path("/etc/pyspamd/pyspamd.toml")
LOCAL_DIR_NAME = "local.d"  # *.toml here are merged over the main file, in name order
ENV_CONFIG = "PYSPAMD_CONFIG"


def shipped_path(name: str) -> Path:
    """A file shipped with pyspamd: inside the wheel, or the source checkout's top level."""
    packaged = Path(__file__).parent / "_data" / name
    return packaged if packaged.exists() else Path(__file__).parent.parent / name


@dataclass
class RulesConfig:
    dirs: list[str] = field(
        default_factory=lambda: [str(shipped_path("rules")), "/etc/pyspamd/rules.d"]
    )


@dataclass
class ScanConfig:
    max_parts: int = 1000
    max_depth: int = 20
    max_part_text_bytes: int = 1 << 20
    max_body_text_bytes: int = 2 << 20
    max_full_bytes: int = 1 << 20
    max_urls: int = 500
    max_headers: int = 1000
    max_html_depth: int = 512
    fallback_regex_max_bytes: int = 65536
    fallback_regex_timeout: float = 0.1


@dataclass
class ActionsConfig:
    # A threshold of false turns the action off.
    reject: float | bool = 15.0
    add_header: float | bool = 6.0
    rewrite_subject: float | bool = False
    greylist: float | bool = 4.0
    soft_reject: float | bool = False
    subject_template: str = "***SPAM*** %s"


@dataclass
class HeadersConfig:
    spamd_result: bool = True
    spam_flag: bool = True
    spam_status: bool = True
    spam_level: bool = True
    spam_bar: bool = False
    level_char: str = "*"
    max_level: int = 50


@dataclass
class MilterConfig:
    listen: list[str] = field(default_factory=lambda: ["inet:11332@127.0.0.1"])
    workers: int = 0  # 0: one per CPU
    socket_mode: str = "0660"
    socket_group: str = ""
    timeout: int = 300
    scan_timeout: float = 20.0
    max_size: int = 10 << 20
    scan_authenticated: bool = False
    trusted_networks: list[str] = field(default_factory=list)
    scan_trusted: bool = False
    fail_action: str = "accept"
    reject_message: str = (
        "Message rejected as spam (score {score:.1f} of {required:.1f}: {symbols})")
    soft_reject_message: str = "Try again later: message looks like spam ({symbols})"
    greylist_message: str = "Greylisted, please try again later"
    foreign_headers: str = "remove"
    server_name: str = ""
    shutdown_timeout: float = 30.0
    # The master connects to each listener this often and expects an OPTNEG reply within
    # health_check_timeout; three failures in a row replace the pool's workers (0: no checks).
    health_check_interval: float = 10.0
    health_check_timeout: float = 10.0


@dataclass
class LoggingConfig:
    level: str = "info"
    target: str = "auto"  # stderr in the foreground (journal, terminal), syslog with --daemon
    syslog_facility: str = "mail"


@dataclass
class GroupConfig:
    max_score: float | bool = False


@dataclass
class StorageConfig:
    backend: str = "sqlite"
    path: str = ""  # empty: /var/lib/pyspamd/pyspamd.sqlite, else the user's data dir
    busy_timeout: float = 10.0
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "pyspamd"
    redis_timeout: float = 2.0
    redis_cluster: bool = False


@dataclass
class AutolearnConfig:
    enabled: bool = False
    spam_score: float = 12.0
    ham_score: float = -2.0
    max_ratio: float = 3.0


@dataclass
class BayesConfig:
    enabled: bool = True
    min_learns: int = 200
    classifier: str = "logistic"  # or "chi2"
    model_c: float = 1.0
    spam_threshold: float = 0.9
    ham_threshold: float = 0.5  # 0.1 suits classifier = "chi2"
    osb_window: int = 1
    max_words: int = 1500
    max_tokens: int = 8000
    expire_days: int = 60
    # Newest messages per class whose tokens are kept for the logistic model's fit; 0: all.
    max_fit_messages: int = 10000
    # Each learned message's symbol vector is kept too (as many), for `pyspamc rescore
    # --from-store` (docs/scores.md).
    symbol_vectors: bool = True
    autolearn: AutolearnConfig = field(default_factory=AutolearnConfig)


SHIPPED_MODEL = "pyspamd-content.npz"


@dataclass
class ModelConfig:
    """`[model]`: the content model shipped in models/ (or one trained with `pyspamc
    model-train`); it votes MODEL_SPAM / MODEL_HAM from the first message on."""

    enabled: bool = True
    path: str = field(default_factory=lambda: str(shipped_path("models") / SHIPPED_MODEL))
    # 0: the thresholds the model was trained with (its metadata). Else probabilities:
    # MODEL_SPAM from spam_threshold (half its score) to confident (its full score);
    # MODEL_HAM at or under ham_threshold.
    spam_threshold: float = 0.0
    confident: float = 0.0
    ham_threshold: float = 0.0


@dataclass
class LdapConfig:
    """`[maps.ldap]` of a map with type = "ldap" (Postfix's ldap_table(5) options)."""

    server_url: str = ""  # ldap://HOST:PORT, ldaps://HOST:PORT
    search_base: str = ""
    query_filter: str = ""  # %s the value, %u its local part, %d its domain (escaped)
    result_attribute: str = ""  # empty: a found entry is the result
    result_format: str = "%s"  # %s: the attribute's value
    bind_dn: str = ""  # empty: anonymous
    bind_password: str = ""
    timeout: float = 2.0
    start_tls: bool = False
    cache_ttl: float = 60.0
    fail_open: bool = True


@dataclass
class MapConfig:
    """One `[[maps]]` entry: see pyspamd.toml.example and README's Policy section."""

    name: str = ""
    type: str = ""  # ip, address, domain, regexp
    match: str = ""  # what the map is looked up with; empty: the type's usual field
    header: str = ""  # the header's name, for match = "header"
    file: str = ""
    values: list[str] = field(default_factory=list)
    symbol: str = ""  # empty: the name in upper case
    score: float = 0.0
    action: str = ""  # forced on a hit whose line names no action of its own
    message: str = ""
    description: str = ""
    ldap: LdapConfig = field(default_factory=LdapConfig)


@dataclass
class GreylistConfig:
    enabled: bool = True
    delay: float = 300.0
    expire: float = 86400.0
    whitelist_expire: float = 35 * 86400.0
    ipv4_mask: int = 24
    ipv6_mask: int = 64
    recipients: list[str] = field(default_factory=list)
    whitelist_networks: list[str] = field(default_factory=list)
    whitelist_hosts: list[str] = field(default_factory=lambda: list(BIG_SENDER_HOSTS))
    whitelist_sender_domains: list[str] = field(default_factory=list)


@dataclass
class RatelimitConfig:
    # key type (ip, user, sender, sender_domain, rcpt) -> "COUNT / PERIOD"; none: off
    limits: dict[str, str] = field(default_factory=dict)
    exempt_networks: list[str] = field(default_factory=list)


@dataclass
class HeloConfig:
    our_names: list[str] = field(default_factory=list)  # empty: this host's FQDN
    our_addresses: list[str] = field(default_factory=list)


@dataclass
class DnsConfig:
    """`[dns]`: the resolver every network check uses (pyspamd/dns/)."""

    # Network checks (RBL, URIBL, SPF, DKIM, DMARC, ARC): true, false, or "auto": on when
    # the resolver is a local one (see __post_init__).
    enabled: bool | str = "auto"
    nameservers: list[str] = field(default_factory=list)  # "IP", "IP:PORT", "[IPv6]:PORT"
    timeout: float = 2.0  # seconds per try
    retries: int = 1  # further tries after a timeout, over the nameservers in turn
    budget: float = 5.0  # seconds for all lookups of one message
    cache_size: int = 50000  # answers kept per worker
    max_ttl: int = 86400  # seconds an answer is kept at most, whatever its TTL says
    negative_ttl: int = 900  # at most, for "no such name" and "no such record"
    # What "auto" decided and why: one line for the start-up log and configtest.
    auto_note: str = field(default="", init=False, compare=False)

    def __post_init__(self) -> None:
        if self.enabled == "auto":
            from pyspamd.dns.nameservers import local_resolver

            self.enabled, self.auto_note = local_resolver(self.nameservers)


def _default_rbl_lists() -> list[RblListConfig]:
    spamhaus_errors = ["127.255.255.252", "127.255.255.254", "127.255.255.255"]
    return [
        RblListConfig(
            name="spamhaus_zen", zone="zen.spamhaus.org", symbol="RBL_SPAMHAUS",
            returncodes={"RBL_SPAMHAUS_SBL": ["127.0.0.2", "127.0.0.3", "127.0.0.9"],
                         "RBL_SPAMHAUS_XBL": ["127.0.0.4", "127.0.0.5", "127.0.0.6",
                                              "127.0.0.7"],
                         "RBL_SPAMHAUS_PBL": ["127.0.0.10", "127.0.0.11"]},
            skip_authenticated=["RBL_SPAMHAUS_PBL"], error_codes=spamhaus_errors),
        RblListConfig(name="spamcop", zone="bl.spamcop.net", symbol="RBL_SPAMCOP"),
        RblListConfig(
            name="spamhaus_dbl", zone="dbl.spamhaus.org", type="domain", match=["urls"],
            symbol="DBL_SPAMHAUS",
            returncodes={"DBL_SPAMHAUS_SPAM": ["127.0.1.2"],
                         "DBL_SPAMHAUS_PHISH": ["127.0.1.4"],
                         "DBL_SPAMHAUS_MALWARE": ["127.0.1.5", "127.0.1.6"],
                         "DBL_SPAMHAUS_ABUSED": ["127.0.1.102", "127.0.1.103",
                                                 "127.0.1.104", "127.0.1.105",
                                                 "127.0.1.106"]},
            error_codes=spamhaus_errors),
    ]


@dataclass
class RblListConfig:
    """One `[[rbl.lists]]` table: a DNS blocklist and the symbols its answers give."""

    name: str = ""
    zone: str = ""
    type: str = "ip"  # ip: reversed address (IPv6 in nibbles); domain: the name itself
    match: list[str] = field(default_factory=lambda: ["client_ip"])
    symbol: str = ""  # a listing whose code no returncodes entry names
    returncodes: dict[str, list[str]] = field(default_factory=dict)
    skip_authenticated: list[str] = field(default_factory=list)
    error_codes: list[str] = field(default_factory=list)
    ipv6: bool = True


@dataclass
class RblConfig:
    lists: list[RblListConfig] = field(default_factory=_default_rbl_lists)
    max_domains: int = 20  # URL domains looked up per message and list
    max_received: int = 3  # Received hops (after the client) looked up, for match "received"


@dataclass
class AuthConfig:
    """`[auth]`: SPF, DKIM, DMARC and ARC verification of inbound mail."""

    spf: bool = True
    received_spf: bool = True  # add a Received-SPF header like policyd-spf
    dkim: bool = True
    dmarc: bool = True
    arc: bool = True
    dmarc_reject: bool = False  # p=reject failures get the reject action
    authentication_results: bool = True
    authserv_id: str = ""  # empty: the milter's server name
    min_key_bits: int = 1024  # shorter DKIM keys are a failure (RFC 8301)
    sender_domain: bool = True  # MAIL FROM domain without MX/A, or not existing at all


@dataclass
class DkimKeyConfig:
    selector: str = ""
    key: str = ""  # PEM private key file (pyspamc dkim-keygen writes one)


@dataclass
class DkimSigningConfig:
    """`[dkim_signing]`: sign outbound mail (authenticated senders, trusted networks)."""

    keys: dict[str, DkimKeyConfig] = field(default_factory=dict)  # domain -> selector, key
    authenticated: bool = True
    trusted_networks: bool = True
    headers: list[str] = field(default_factory=lambda: list(DKIM_SIGNED_HEADERS))


# Headers whose change would change what the reader sees or replies to. From twice guards
# against a second From added after signing (oversigning).
DKIM_SIGNED_HEADERS: tuple[str, ...] = ("from", "from", "to", "cc", "subject", "date", "message-id",
                       "reply-to", "in-reply-to", "references", "mime-version",
                       "content-type", "content-transfer-encoding", "list-unsubscribe")


@dataclass
class FuzzyFlagConfig:
    symbol: str = ""
    score: float = 0.0
    description: str = ""


def _default_fuzzy_flags() -> dict[str, FuzzyFlagConfig]:
    return {
        "1": FuzzyFlagConfig("FUZZY_DENIED", 12.0, "Like a message reported as spam"),
        "2": FuzzyFlagConfig("FUZZY_PROB", 5.0, "Like a message reported as probable spam"),
        "3": FuzzyFlagConfig("FUZZY_WHITE", -2.0, "Like a message reported as good mail"),
    }


@dataclass
class FuzzyConfig:
    """`[fuzzy]`: fuzzy hashes of reported messages (pyspamc fuzzy_add), in the store."""

    enabled: bool = True
    flags: dict[str, FuzzyFlagConfig] = field(default_factory=_default_fuzzy_flags)
    min_similarity: float = 0.7  # share of equal MinHash values for a text part to match
    min_shingles: int = 10  # distinct word 3-shingles a text part needs to be hashed
    min_bytes: int = 4096  # attachments and images smaller than this get no exact hash
    expire_days: float = 90.0  # a hash is forgotten this long after it was last added
    learn_spam: bool = False  # learn_spam (CLI and controller) also fuzzy_adds, flag 1
    learn_flag: int = 1


@dataclass
class AntivirusConfig:
    """`[antivirus]`: messages sent to clamd (zINSTREAM) during the scan."""

    enabled: bool = False
    address: str = "/var/run/clamav/clamd.ctl"  # a unix socket path, or HOST:PORT
    scan: str = "message"  # "message": all of it; "attachments": each non-text part
    max_size: int = 25 << 20  # bytes; keep at or below clamd's StreamMaxLength (25M)
    timeout: float = 10.0  # seconds for clamd's answer; below milter.scan_timeout
    # Signature name prefixes of third-party spam signatures -> the symbol they give.
    families: dict[str, list[str]] = field(default_factory=lambda: {
        "CLAM_PHISH": ["Sanesecurity.Phishing.", "Sanesecurity.Scam.", "Sanesecurity.Spear.",
                       "Heuristics.Phishing."],
        "CLAM_SPAM": ["Sanesecurity.Junk.", "Sanesecurity.Spam.", "Sanesecurity.Jurlbl.",
                      "Sanesecurity.Blurl.", "Sanesecurity.Rogue.", "winnow.spam.",
                      "winnow.phish."],
    })
    virus_action: str = "reject"  # forced for CLAM_VIRUS; "" scores it only
    virus_message: str = "Message refused: it contains a virus ({virus})"
    fail_action: str = "accept"  # "accept" (with a header) or "tempfail"


@dataclass
class ControllerConfig:
    """`[controller]`: the HTTP API, metrics and web page, and the scan history it shows."""

    enabled: bool = True  # the milter's master starts it
    listen: str = "127.0.0.1:11334"
    password: str = ""  # read-only access; a hash printed by `pyspamc pw`
    enable_password: str = ""  # read-write access (learning); also good for reading
    secure_ip: list[str] = field(default_factory=lambda: ["127.0.0.1", "::1"])
    max_body: int = 10 << 20
    max_rcpts: int = 1000
    scan_threads: int = 4
    # A request's line and headers must arrive within header_timeout of the connection or of
    # the previous answer (also the limit for an idle kept-alive connection), its body within
    # body_timeout; past max_connections the longest idle connection is closed.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    max_connections: int = 128
    record_scans: bool = True
    history_size: int = 1000
    flush_interval: float = 1.0


# Client host names (verified reverse DNS, subdomains included) of large senders that retry
# from a different address of a big pool, so a retry would start a new triplet each time.
BIG_SENDER_HOSTS: tuple[str, ...] = ("google.com", "outlook.com", "amazonses.com", "yahoo.com",
                    "mimecast.com", "pphosted.com", "messagelabs.com", "icloud.com")


@dataclass
class Config:
    rules: RulesConfig = field(default_factory=RulesConfig)
    scan: ScanConfig = field(default_factory=ScanConfig)
    actions: ActionsConfig = field(default_factory=ActionsConfig)
    headers: HeadersConfig = field(default_factory=HeadersConfig)
    milter: MilterConfig = field(default_factory=MilterConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    scores: dict[str, float] = field(default_factory=dict)
    groups: dict[str, GroupConfig] = field(default_factory=dict)
    storage: StorageConfig = field(default_factory=StorageConfig)
    bayes: BayesConfig = field(default_factory=BayesConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    maps: list[MapConfig] = field(default_factory=list)
    greylist: GreylistConfig = field(default_factory=GreylistConfig)
    ratelimit: RatelimitConfig = field(default_factory=RatelimitConfig)
    helo: HeloConfig = field(default_factory=HeloConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    rbl: RblConfig = field(default_factory=RblConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    dkim_signing: DkimSigningConfig = field(default_factory=DkimSigningConfig)
    path: Path | None = None
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    fuzzy: FuzzyConfig = field(default_factory=FuzzyConfig)
    antivirus: AntivirusConfig = field(default_factory=AntivirusConfig)


class ConfigError(Exception):
    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


def resolve_config_path(arg: str | None) -> Path | None:
    if arg:
        return Path(arg)
    env = os.environ.get(ENV_CONFIG)
    if env:
        return Path(env)
    return DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None


def local_dir(path: Path) -> Path:
    """Where the admin's own settings live beside a config file: local.d/ next to it."""
    return path.parent / LOCAL_DIR_NAME


def config_files(path: Path) -> list[Path]:
    """The main file, then local.d/*.toml in name order: the order they are merged in."""
    overlays = sorted(p for p in local_dir(path).glob("*.toml") if p.is_file()) \
        if local_dir(path).is_dir() else []
    return [path, *overlays]


def _read_toml(path: Path) -> tuple[str, dict[str, Any]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError([f"{path}: cannot read config: {exc.strerror or exc}"]) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError([f"{path}: config is not UTF-8 text: {exc}"]) from exc
    try:
        return text, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"{path}: TOML syntax error: {exc}"]) from exc


def merge_tables(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """`over` on top of `base`: tables merge key by key, anything else (numbers, strings,
    lists, arrays of tables such as [[maps]]) is replaced whole."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_tables(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(path: str | Path | None) -> Config:
    """Load and validate; raises ConfigError listing every problem. None: built-in defaults.
    The files of local.d/ beside the main file are merged over it (config_files)."""
    if path is None:
        return Config()
    path = Path(path)
    data: dict[str, Any] = {}
    sources = []
    for file in config_files(path):
        text, layer = _read_toml(file)
        data = merge_tables(data, layer)
        sources.append((file, text))
    locator = _Locator(path, sources[0][1], sources[1:])
    errors: list[str] = []
    config = _build(Config, data, (), locator, errors)
    config.path = path
    base = path.parent
    config.rules.dirs = [str(base / d) if not Path(d).is_absolute() else d
                         for d in config.rules.dirs]
    for name in ("reject", "add_header", "rewrite_subject", "greylist", "soft_reject"):
        if getattr(config.actions, name) is True:
            errors.append(f"{locator.where(('actions', name))}: actions.{name} must be a "
                          "score threshold (a number) or false to turn the action off")
    if "%s" not in config.actions.subject_template:
        errors.append(f"{locator.where(('actions', 'subject_template'))}: subject_template "
                      "needs %s where the original subject goes")
    errors.extend(_check_milter(config, locator))
    for name, value in vars(config.scan).items():
        if not value > 0:
            errors.append(f"{locator.where(('scan', name))}: scan.{name} must be positive")
    for name, group in config.groups.items():
        if group.max_score is True:
            errors.append(f"{locator.where(('groups', name, 'max_score'))}: max_score must "
                          "be a number or false")
    _check_storage_and_bayes(config, locator, errors)
    _check_model(config, locator, errors)
    errors.extend(_check_maps(config, locator))
    errors.extend(_check_greylist(config, locator))
    errors.extend(_check_ratelimit(config, locator))
    errors.extend(_check_network(config, locator))
    errors.extend(_check_controller(config, locator))
    errors.extend(_check_fuzzy(config, locator))
    errors.extend(_check_antivirus(config, locator))
    if errors:
        raise ConfigError(errors)
    return config


def _check_storage_and_bayes(config: Config, locator: _Locator, errors: list[str]) -> None:
    storage, bayes = config.storage, config.bayes
    errors.extend(storage_errors(storage, lambda name: locator.where(("storage", name))))
    if storage.path and not Path(storage.path).is_absolute() and config.path is not None:
        storage.path = str(config.path.parent / storage.path)
    if bayes.classifier not in ("logistic", "chi2"):
        errors.append(f"{locator.where(('bayes', 'classifier'))}: bayes.classifier must be "
                      f"\"logistic\" or \"chi2\", got {bayes.classifier!r}")
    if not bayes.model_c > 0.0:
        errors.append(f"{locator.where(('bayes', 'model_c'))}: bayes.model_c must be above 0")
    if not 0.5 <= bayes.spam_threshold <= 1.0:
        errors.append(f"{locator.where(('bayes', 'spam_threshold'))}: bayes.spam_threshold "
                      "must be between 0.5 and 1.0")
    if not 0.0 <= bayes.ham_threshold <= 0.5:
        errors.append(f"{locator.where(('bayes', 'ham_threshold'))}: bayes.ham_threshold "
                      "must be between 0.0 and 0.5")
    if not 1 <= bayes.osb_window <= 5:
        errors.append(f"{locator.where(('bayes', 'osb_window'))}: bayes.osb_window must be "
                      "1 (single words) to 5")
    for name in ("min_learns", "max_words", "max_tokens", "expire_days", "max_fit_messages"):
        if getattr(bayes, name) < 0:
            errors.append(f"{locator.where(('bayes', name))}: bayes.{name} must be >= 0")
    if bayes.autolearn.spam_score <= bayes.autolearn.ham_score:
        errors.append(f"{locator.where(('bayes', 'autolearn', 'spam_score'))}: "
                      "autolearn.spam_score must be above autolearn.ham_score")
    if bayes.autolearn.max_ratio < 1.0:
        errors.append(f"{locator.where(('bayes', 'autolearn', 'max_ratio'))}: "
                      "autolearn.max_ratio must be at least 1.0")


def _check_model(config: Config, locator: _Locator, errors: list[str]) -> None:
    model = config.model
    if model.path and not Path(model.path).is_absolute() and config.path is not None:
        model.path = str(config.path.parent / model.path)
    for name in ("spam_threshold", "confident", "ham_threshold"):
        value = getattr(model, name)
        if value != 0.0 and not 0.0 < value < 1.0:
            errors.append(f"{locator.where(('model', name))}: model.{name} must be 0 (the "
                          "model's own) or a probability between 0 and 1")
    if model.spam_threshold and model.confident and model.confident <= model.spam_threshold:
        errors.append(f"{locator.where(('model', 'confident'))}: model.confident must be "
                      "above model.spam_threshold")
    if model.spam_threshold and model.ham_threshold >= model.spam_threshold:
        errors.append(f"{locator.where(('model', 'ham_threshold'))}: model.ham_threshold "
                      "must be below model.spam_threshold")
    if model.enabled and not model.path:
        errors.append(f"{locator.where(('model', 'path'))}: model.path is empty; set it or "
                      "set model.enabled = false")


class _Locator:
    """Finds the line of a key, so semantic errors can point at it like syntax errors do."""

    def __init__(self, path: Path, text: str,
                 overlays: Sequence[tuple[Path, str]] = ()) -> None:
        self.path = path
        self.lines = text.splitlines()
        # local.d files, read after the main one: the last that sets a key is where it is.
        self.overlays = [(p, t.splitlines()) for p, t in overlays]

    def where(self, keys: tuple[str, ...]) -> str:
        for path, lines in reversed(self.overlays):
            found = self._find(path, lines, keys)
            if found:
                return found
        return self._find(self.path, self.lines, keys) or str(self.path)

    @staticmethod
    def _find(path: Path, lines: list[str], keys: tuple[str, ...]) -> str | None:
        section: tuple[str, ...] = ()
        header = re.compile(r"^\s*\[+\s*([^\]]+?)\s*\]+")
        arrays: dict[tuple[str, ...], int] = {}  # [[name]] tables seen so far, by name
        for number, line in enumerate(lines, 1):
            m = header.match(line)
            if m:
                section = tuple(p.strip().strip("\"'") for p in m.group(1).split("."))
                if line.lstrip().startswith("[["):
                    # The Nth [[maps]] table is ("maps", "N") in the keys errors name.
                    index = arrays.get(section, 0)
                    arrays[section] = index + 1
                    section = (*section, str(index))
                elif len(section) > 1 and section[:1] in arrays:
                    # [maps.ldap] belongs to the last [[maps]] table above it.
                    section = (section[0], str(arrays[section[:1]] - 1), *section[1:])
                if section == keys:
                    return f"{path}:{number}"
                continue
            if section == keys[:-1] and re.match(
                rf"^\s*[\"']?{re.escape(keys[-1])}[\"']?\s*=", line
            ):
                return f"{path}:{number}"
        return None


def _type_name(tp: Any) -> str:
    if tp is bool:
        return "true or false"
    if tp is int:
        return "a whole number"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin = typing.get_origin(tp)
    if origin is list:
        return "a list of strings"
    if origin in (types.UnionType, typing.Union):
        if set(typing.get_args(tp)) == {float, bool}:
            return "a number, or false to turn it off"
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    return str(tp)


def _coerce(tp: Any, value: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        for option in typing.get_args(tp):
            ok, out = _coerce(option, value)
            if ok:
                return True, out
        return False, None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if tp is str:
        return isinstance(value, str), value
    if origin is list:
        (item,) = typing.get_args(tp)
        if not isinstance(value, list):
            return False, None
        items = [_coerce(item, v) for v in value]
        return all(ok for ok, _ in items), [v for _, v in items]
    return False, None


def _build(cls: type, data: Any, keys: tuple[str, ...], loc: _Locator, errors: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    # Config.path is where the file was read from, not an option; [storage] path is one.
    known = {f.name for f in dataclasses.fields(cls)
             if f.init and (cls is not Config or f.name != "path")}
    where = loc.where(keys) if keys else str(loc.path)
    if not isinstance(data, dict):
        errors.append(f"{where}: [{'.'.join(keys)}] must be a table")
        return cls()
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        here = (*keys, key)
        if key not in known:
            errors.append(
                f"{loc.where(here)}: unknown option {'.'.join(here)!r}; "
                f"known here: {', '.join(sorted(known))}"
            )
            continue
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value, here, loc, errors)  # type: ignore[arg-type]
            continue
        if typing.get_origin(tp) is dict:
            kwargs[key] = _build_map(tp, value, here, loc, errors)
            continue
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(typing.get_args(tp)[0]):
            kwargs[key] = _build_tables(typing.get_args(tp)[0], value, here, loc, errors)
            continue
        ok, coerced = _coerce(tp, value)
        if not ok:
            errors.append(
                f"{loc.where(here)}: {'.'.join(here)} must be {_type_name(tp)}, got {value!r}"
            )
            continue
        kwargs[key] = coerced
    return cls(**kwargs)


def _build_tables(item_type: type, value: Any, keys: tuple[str, ...], loc: _Locator,
                  errors: list[str]) -> list[Any]:
    """An array of tables (`[[maps]]`): each item is built like a section."""
    if not isinstance(value, list):
        errors.append(f"{loc.where(keys)}: {'.'.join(keys)} must be written as [[{keys[-1]}]] "
                      "tables")
        return []
    return [_build(item_type, item, (*keys, str(index)), loc, errors)
            for index, item in enumerate(value)]


def _build_map(tp: Any, value: Any, keys: tuple[str, ...], loc: _Locator, errors: list[str]) -> Any:
    _, item_type = typing.get_args(tp)
    if not isinstance(value, dict):
        errors.append(f"{loc.where(keys)}: [{'.'.join(keys)}] must be a table")
        return {}
    out: dict[str, Any] = {}
    for name, item in value.items():
        here = (*keys, name)
        if dataclasses.is_dataclass(item_type):
            out[name] = _build(item_type, item, here, loc, errors)  # type: ignore[arg-type]
            continue
        ok, coerced = _coerce(item_type, item)
        if ok:
            out[name] = coerced
        else:
            errors.append(
                f"{loc.where(here)}: {'.'.join(here)} must be {_type_name(item_type)}, "
                f"got {item!r}"
            )
    return out


_LISTEN = re.compile(r"(?:inet6?:\d{1,5}(?:@\S+)?|(?:unix|local):/\S+)\Z")
_TEMPLATE_FIELDS = {"score": 0.0, "required": 0.0, "symbols": "", "action": "", "queue_id": ""}


def _check_milter(config: Config, loc: _Locator) -> list[str]:
    """Values that TOML types cannot express: socket specs, networks, templates, choices."""
    import ipaddress
    import logging

    m, errors = config.milter, []

    def bad(key: str, what: str, section: str = "milter") -> None:
        errors.append(f"{loc.where((section, key))}: {section}.{key} {what}")

    for spec in m.listen:
        if not _LISTEN.match(spec):
            bad("listen", f"has {spec!r}; write inet:PORT@HOST, inet6:PORT@HOST or unix:/PATH")
    if not m.listen:
        bad("listen", "is empty; give at least one socket, e.g. \"inet:11332@127.0.0.1\"")
    if m.workers < 0:
        bad("workers", "must be 0 (one per CPU) or more")
    try:
        int(m.socket_mode, 8)
    except ValueError:
        bad("socket_mode", f"must be an octal mode like \"0660\", got {m.socket_mode!r}")
    for net in m.trusted_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            bad("trusted_networks", f"has {net!r}, which is not an address or CIDR network")
    if m.fail_action not in ("accept", "tempfail"):
        bad("fail_action", f"must be \"accept\" or \"tempfail\", got {m.fail_action!r}")
    if m.foreign_headers not in ("remove", "rename", "keep"):
        bad("foreign_headers", "must be \"remove\", \"rename\" or \"keep\"")
    for key in ("reject_message", "soft_reject_message", "greylist_message"):
        try:
            getattr(m, key).format(**_TEMPLATE_FIELDS)
        except (KeyError, ValueError, IndexError) as exc:
            bad(key, f"is not a valid template ({exc}); fields: {', '.join(_TEMPLATE_FIELDS)}")
    if m.max_size <= 0 or m.timeout <= 0 or m.scan_timeout <= 0 or m.shutdown_timeout <= 0:
        bad("max_size", "and the timeouts must be positive")
    if m.health_check_interval < 0 or m.health_check_timeout <= 0:
        bad("health_check_interval", "must be 0 (off) or positive, and health_check_timeout "
            "positive (seconds)")
    if logging.getLevelName(config.logging.level.upper()) not in range(0, 100):
        bad("level", "must be debug, info, warning or error", "logging")
    return errors


# Written out here because pyspamd.actions imports this module.
_MAP_ACTIONS = ("reject", "soft reject", "discard", "quarantine", "rewrite subject",
                "add header", "greylist", "no action", "accept")
MAP_TYPES = ("ip", "address", "domain", "regexp", "ldap")
# What a map can be looked up with, and which types fit each.
MAP_MATCHES: dict[str, tuple[str, ...]] = {
    "client_ip": ("ip", "ldap"), "received_ip": ("ip",),
    "envelope_from": ("address", "domain", "regexp", "ldap"),
    "header_from": ("address", "domain", "regexp", "ldap"),
    "rcpt": ("address", "domain", "regexp", "ldap"),
    "helo": ("domain", "regexp"), "hostname": ("domain", "regexp"),
    "url_hosts": ("domain", "regexp"), "header": ("regexp", "address", "domain"),
    "headers": ("regexp",), "body": ("regexp",), "user": ("address", "regexp", "ldap"),
}
DEFAULT_MATCH = {"ip": "client_ip", "address": "envelope_from", "domain": "hostname",
                 "regexp": "headers", "ldap": "envelope_from"}
_MAP_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}\Z")
_SYMBOL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _check_maps(config: Config, loc: _Locator) -> list[str]:
    errors: list[str] = []
    seen: set[str] = set()
    for index, m in enumerate(config.maps):
        at = ("maps", str(index))
        label = m.name or f"#{index + 1}"

        def bad(key: str, what: str, at: tuple[str, ...] = at, label: str = label) -> None:
            errors.append(f"{loc.where((*at, key))}: maps {label}: {what}")

        if not _MAP_NAME.match(m.name):
            bad("name", "needs a name of letters, digits, _ or - (name = \"blocked_senders\")")
        elif m.name in seen:
            bad("name", "is defined twice; map names must be unique")
        seen.add(m.name)
        if m.type not in MAP_TYPES:
            bad("type", f"type must be one of {', '.join(MAP_TYPES)}, got {m.type!r}")
            continue
        m.match = m.match or DEFAULT_MATCH[m.type]
        if m.match not in MAP_MATCHES:
            bad("match", f"match must be one of {', '.join(MAP_MATCHES)}, got {m.match!r}")
        elif m.type not in MAP_MATCHES[m.match]:
            bad("match", f"a map of type {m.type!r} cannot match {m.match}; use type "
                f"{' or '.join(repr(t) for t in MAP_MATCHES[m.match])}")
        if (m.match == "header") != bool(m.header):
            bad("header", "header = \"Name\" goes with match = \"header\" (and only there)")
        if m.type == "ldap":
            errors.extend(_check_ldap(m, at, label, loc))
        elif bool(m.file) == bool(m.values):
            bad("file", "give either file = \"PATH\" or values = [...], not both or neither")
        if m.file and not Path(m.file).is_absolute() and config.path is not None:
            m.file = str(config.path.parent / m.file)
        m.symbol = m.symbol or m.name.upper().replace("-", "_")
        if not _SYMBOL.match(m.symbol):
            bad("symbol", f"{m.symbol!r} is not a symbol name (letters, digits, _)")
        if m.action and m.action not in _MAP_ACTIONS:
            bad("action", f"action must be one of {', '.join(_MAP_ACTIONS)}, got {m.action!r}")
    return errors


def _check_ldap(m: MapConfig, at: tuple[str, ...], label: str, loc: _Locator) -> list[str]:
    errors, ldap = [], m.ldap
    where = (*at, "ldap")
    if not ldap.server_url.startswith(("ldap://", "ldaps://")):
        errors.append(f"{loc.where((*where, 'server_url'))}: maps {label}: ldap.server_url must "
                      "be ldap://HOST:PORT or ldaps://HOST:PORT")
    if not ldap.search_base:
        errors.append(f"{loc.where(where)}: maps {label}: ldap.search_base is required")
    if "%s" not in ldap.query_filter and "%u" not in ldap.query_filter \
            and "%d" not in ldap.query_filter:
        errors.append(f"{loc.where((*where, 'query_filter'))}: maps {label}: ldap.query_filter "
                      "needs %s (or %u, %d) where the looked-up value goes")
    if m.file or m.values:
        key = "file" if m.file else "values"
        errors.append(f"{loc.where((*at, key))}: maps {label}: an ldap map takes neither "
                      "file nor values")
    if ldap.timeout <= 0 or ldap.cache_ttl < 0:
        errors.append(f"{loc.where((*where, 'timeout'))}: maps {label}: ldap.timeout must be "
                      "positive and cache_ttl >= 0")
    return errors


def _check_greylist(config: Config, loc: _Locator) -> list[str]:
    import ipaddress

    g, errors = config.greylist, []

    def bad(key: str, what: str) -> None:
        errors.append(f"{loc.where(('greylist', key))}: greylist.{key} {what}")

    if g.delay < 0 or g.expire <= g.delay:
        bad("expire", "must be above greylist.delay, and delay must be >= 0")
    if g.whitelist_expire <= 0:
        bad("whitelist_expire", "must be positive")
    if not 8 <= g.ipv4_mask <= 32:
        bad("ipv4_mask", "must be 8 to 32")
    if not 16 <= g.ipv6_mask <= 128:
        bad("ipv6_mask", "must be 16 to 128")
    for net in g.whitelist_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            bad("whitelist_networks", f"has {net!r}, which is not an address or CIDR network")
    return errors


def _check_ratelimit(config: Config, loc: _Locator) -> list[str]:
    import ipaddress

    from pyspamd.policy.ratelimit import RateError, parse_limit

    errors = []
    for key_type, text in config.ratelimit.limits.items():
        try:
            parse_limit(key_type, text)
        except RateError as exc:
            errors.append(f"{loc.where(('ratelimit', 'limits', key_type))}: ratelimit.limits."
                          f"{key_type}: {exc}")
    for address in config.helo.our_addresses:
        try:
            ipaddress.ip_address(address)
        except ValueError:
            errors.append(f"{loc.where(('helo', 'our_addresses'))}: helo.our_addresses has "
                          f"{address!r}, which is not an IP address")
    for net in config.ratelimit.exempt_networks:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            errors.append(f"{loc.where(('ratelimit', 'exempt_networks'))}: ratelimit."
                          f"exempt_networks has {net!r}, which is not an address or network")
    return errors


def _check_network(config: Config, loc: _Locator) -> list[str]:
    """[dns], [[rbl.lists]], [auth] and [dkim_signing]: addresses, names, numbers, key files."""
    from pyspamd.dns.nameservers import parse_nameserver

    errors: list[str] = []
    dns = config.dns
    for spec in dns.nameservers:
        try:
            parse_nameserver(spec)
        except ValueError as exc:
            errors.append(f"{loc.where(('dns', 'nameservers'))}: dns.nameservers: {exc}")
    if isinstance(dns.enabled, str):
        errors.append(f"{loc.where(('dns', 'enabled'))}: dns.enabled must be true, false or "
                      f"\"auto\", got {dns.enabled!r}")
    if dns.timeout <= 0 or dns.budget <= 0:
        errors.append(f"{loc.where(('dns', 'timeout'))}: dns.timeout and dns.budget must be "
                      "positive")
    if dns.enabled and dns.budget >= config.milter.scan_timeout:
        errors.append(f"{loc.where(('dns', 'budget'))}: dns.budget ({dns.budget:g}s) must be "
                      f"below milter.scan_timeout ({config.milter.scan_timeout:g}s), or the "
                      "scan gives up before the DNS answers it waits for")
    if dns.retries < 0 or dns.cache_size < 0 or dns.max_ttl < 0 or dns.negative_ttl < 0:
        errors.append(f"{loc.where(('dns', 'retries'))}: dns.retries, cache_size, max_ttl "
                      "and negative_ttl must be >= 0")
    matches = {"ip": ("client_ip", "received"), "domain": ("urls", "helo", "from",
                                                           "envelope_from")}
    for index, rbl in enumerate(config.rbl.lists):
        at = ("rbl", "lists", str(index))
        label = rbl.name or f"#{index + 1}"

        def bad(key: str, what: str, at: tuple[str, ...] = at, label: str = label) -> None:
            errors.append(f"{loc.where((*at, key))}: rbl list {label}: {what}")

        if not rbl.zone or " " in rbl.zone:
            bad("zone", "needs the list's DNS zone, e.g. zone = \"zen.spamhaus.org\"")
        if rbl.type not in matches:
            bad("type", f"type must be \"ip\" or \"domain\", got {rbl.type!r}")
            continue
        for match in rbl.match:
            if match not in matches[rbl.type]:
                bad("match", f"a list of type {rbl.type!r} matches "
                    f"{', '.join(matches[rbl.type])}, not {match!r}")
        for symbol in [rbl.symbol, *rbl.returncodes, *rbl.skip_authenticated]:
            if symbol and not _SYMBOL.match(symbol):
                bad("symbol", f"{symbol!r} is not a symbol name (letters, digits, _)")
        if not rbl.symbol and not rbl.returncodes:
            bad("symbol", "needs symbol = \"NAME\" or returncodes, or a listing adds nothing")
        for code in [c for codes in rbl.returncodes.values() for c in codes] + rbl.error_codes:
            try:
                ipaddress.ip_address(code)
            except ValueError:
                bad("returncodes", f"{code!r} is not an IP address")
    if config.rbl.max_domains < 0 or config.rbl.max_received < 0:
        errors.append(f"{loc.where(('rbl', 'max_domains'))}: rbl.max_domains and "
                      "max_received must be >= 0")
    if config.auth.min_key_bits < 512:
        errors.append(f"{loc.where(('auth', 'min_key_bits'))}: auth.min_key_bits must be at "
                      "least 512")
    for domain, key in config.dkim_signing.keys.items():
        where = _key_table_line(loc, domain)
        if not key.selector or not key.key:
            errors.append(f"{where}: dkim_signing.keys.{domain} needs selector and key")
            continue
        if not Path(key.key).is_absolute() and config.path is not None:
            key.key = str(config.path.parent / key.key)
        try:
            text = Path(key.key).read_bytes()
        except OSError as exc:
            errors.append(f"{where}: dkim_signing.keys.{domain}: cannot read key {key.key}: "
                          f"{exc.strerror or exc}")
            continue
        if b"PRIVATE KEY" not in text:
            errors.append(f"{where}: dkim_signing.keys.{domain}: {key.key} is not a PEM private "
                          "key (pyspamc dkim-keygen DOMAIN SELECTOR writes one)")
    return errors


def _key_table_line(loc: _Locator, domain: str) -> str:
    """FILE:LINE of [dkim_signing.keys."DOMAIN"] (the locator splits names at their dots)."""
    for path, lines in [*reversed(loc.overlays), (loc.path, loc.lines)]:
        for number, line in enumerate(lines, 1):
            text = line.strip().replace(" ", "")
            if text.startswith("[dkim_signing.keys.") and domain in text:
                return f"{path}:{number}"
    return str(loc.path)


def split_host_port(text: str) -> tuple[str, int]:
    """"HOST:PORT" or "[V6]:PORT" -> (host, port); ValueError if it is neither."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), int(port)


def is_local_host(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name may resolve to anything


def _check_controller(config: Config, loc: _Locator) -> list[str]:
    import ipaddress

    from pyspamd.controller.auth import HashError, parse_hash

    c, errors = config.controller, []

    def bad(key: str, what: str) -> None:
        errors.append(f"{loc.where(('controller', key))}: controller.{key} {what}")

    for key in ("password", "enable_password"):
        if getattr(c, key):
            try:
                parse_hash(getattr(c, key))
            except HashError as exc:
                bad(key, f"is not a password hash ({exc}); paste what `pyspamc pw` prints")
    for net in c.secure_ip:
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            bad("secure_ip", f"has {net!r}, which is not an address or CIDR network")
    try:
        host, _ = split_host_port(c.listen)
    except ValueError:
        bad("listen", f"is {c.listen!r}; write HOST:PORT, e.g. \"127.0.0.1:11334\"")
    else:
        if c.enabled and not is_local_host(host) and not (c.password or c.enable_password):
            bad("listen", f"is {c.listen}, reachable from other hosts, and no password is set: "
                "anyone there could read the scan history and train Bayes. Set "
                "controller.enable_password to a hash from `pyspamc pw`, or listen on "
                "127.0.0.1 (behind a reverse proxy)")
    if c.header_timeout <= 0 or c.body_timeout <= 0:
        bad("header_timeout", "and body_timeout must be positive (seconds)")
    for key in ("max_body", "max_rcpts", "scan_threads", "history_size", "max_connections"):
        if getattr(c, key) <= 0:
            bad(key, "must be positive")
    if c.flush_interval <= 0:
        bad("flush_interval", "must be positive (seconds)")
    return errors


def _check_fuzzy(config: Config, loc: _Locator) -> list[str]:
    f, errors = config.fuzzy, []

    def bad(key: str, what: str, at: tuple[str, ...] = ("fuzzy",)) -> None:
        errors.append(f"{loc.where((*at, key))}: {'.'.join(at)}.{key} {what}")

    for flag, spec in f.flags.items():
        if not flag.isdigit() or not 0 < int(flag) < 1 << 31:
            bad(flag, "must be named by a flag number (1, 2, ...)", ("fuzzy", "flags"))
        elif not _SYMBOL.match(spec.symbol):
            bad("symbol", f"{spec.symbol!r} is not a symbol name (letters, digits, _)",
                ("fuzzy", "flags", flag))
    if not 0.3 <= f.min_similarity <= 1.0:
        bad("min_similarity", "must be between 0.3 and 1.0")
    if f.min_shingles < 3 or f.min_bytes < 0 or f.expire_days <= 0:
        bad("min_shingles", "must be at least 3, min_bytes >= 0 and expire_days positive")
    if f.learn_spam and str(f.learn_flag) not in f.flags:
        bad("learn_flag", f"is {f.learn_flag}, which [fuzzy.flags] does not define")
    return errors


def _check_antivirus(config: Config, loc: _Locator) -> list[str]:
    a, errors = config.antivirus, []

    def bad(key: str, what: str) -> None:
        errors.append(f"{loc.where(('antivirus', key))}: antivirus.{key} {what}")

    if not a.address.startswith("/"):
        try:
            split_host_port(a.address)
        except ValueError:
            bad("address", f"is {a.address!r}; write a unix socket path "
                "(/var/run/clamav/clamd.ctl) or HOST:PORT (127.0.0.1:3310)")
    if a.scan not in ("message", "attachments"):
        bad("scan", f"must be \"message\" or \"attachments\", got {a.scan!r}")
    if a.max_size <= 0 or a.timeout <= 0:
        bad("max_size", "and antivirus.timeout must be positive")
    if a.enabled and a.timeout >= config.milter.scan_timeout:
        bad("timeout", f"({a.timeout:g}s) must be below milter.scan_timeout "
            f"({config.milter.scan_timeout:g}s), or the scan gives up before clamd answers "
            "and the message gets no CLAM_FAIL and no header")
    for symbol in a.families:
        if not _SYMBOL.match(symbol):
            bad("families", f"has {symbol!r}, which is not a symbol name")
    if a.virus_action and a.virus_action not in _MAP_ACTIONS:
        bad("virus_action", f"must be one of {', '.join(_MAP_ACTIONS)} or \"\", "
            f"got {a.virus_action!r}")
    try:
        a.virus_message.format(virus="X")
    except (KeyError, ValueError, IndexError) as exc:
        bad("virus_message", f"is not a valid template ({exc}); its field is {{virus}}")
    if a.fail_action not in ("accept", "tempfail"):
        bad("fail_action", f"must be \"accept\" or \"tempfail\", got {a.fail_action!r}")
    return errors
