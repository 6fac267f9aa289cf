"""The look-alike letters (Unicode confusables) and the free-mail list come from maintained
packages; the hand-made entries stay in them."""

from __future__ import annotations

from pyspamd.brands import is_freemail
from pyspamd.lookalikes import is_lookalike, latin_lookalikes, latin_skeleton


def test_confusables_table() -> None:
    table = latin_lookalikes()
    assert len(table) > 1000
    for char in "аеорсухіјѕԁһАВЕКМНОРСТХοαρνΑΒΕΖΗΙΚΜΝΟΡΤΥΧոսօհացвкмнт":
        assert is_lookalike(char), char
    for char in "aZ1-éßж":  # ASCII, accented Latin, a Cyrillic letter like no Latin one
        assert not is_lookalike(char), char
    assert latin_skeleton("РауРаl") == "paypal"
    assert latin_skeleton("ｖｉａｇｒａ 𝐯𝐢𝐚𝐠𝐫𝐚") == "viagra viagra"


def test_freemail_list() -> None:
    for domain in ("gmail.com", "GMX.de", "yandex.ru", "mail.com", "seznam.cz", "o2.pl",
                   "tutanota.com", "rediffmail.com", "libero.it", "10minutemail.co.za"):
        assert is_freemail(domain), domain
    for domain in ("example.org", "kernel.org", "paypal.com", "amazon.com", "ibm.com"):
        assert not is_freemail(domain), domain
