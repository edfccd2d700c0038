"""Redaction of personal data in free text a citizen types (pure, no I/O). One redactor for every service.

Each finding is replaced by a typed ASCII placeholder `[REDACTED:<KIND>]`:

- NATIONAL_ID: 13 digits with a valid check digit, plain or grouped 1-4-5-2-1 with any separator
  (dash, dot, space) at any of those four places, in any mix. A failing check digit is not an ID.
- PHONE: Thai numbers as people write them: mobiles 06/08/09 + 8 digits, Bangkok 02 + 7, provincial
  03-07 + 7; any separators (dash, dot, spaces, `)`) between any digits, the area code in parentheses,
  `+66`, `66`, `0066`, `(+66)`, `+66 (0)` instead of the leading 0; a slash or underscore between groups
  (081/234/5678, 02_123_4567) when it is the one separator used and the first group has 2-3 digits (4 if two
  more follow). Not a comma or a colon (amounts, times).
- EMAIL: local@domain.tld (also `(at)` / `[at]`, a space around `@`, the `.ไทย` domain), touching Thai
  text or punctuation on either side; a space around a dot of the domain or a comma for it (somchai@gmail .com,
  somchai@gmail,com) when the domain ends in com/net/org/edu/gov/info/biz/io/th/ไทย.
- BANK_ACCOUNT: 10-12 digits in a row (not a phone), or dash-grouped numbers totalling 10-12 digits.
- LINE_ID: an ASCII id after ไลน์ / ไลน์ไอดี / ไอดีไลน์ / แอดไลน์ / Line ID / LINE: / add line, and any
  standalone `@handle`, except the official accounts in OFFICIAL_LINE_ACCOUNTS or named after an agency code
  (`@dga`, `@dga.th`, `@dgaofficial`): those are published by government, not personal.
- NAME: the name after a Thai honorific (นาย, นาง, นางสาว, น.ส., ด.ช., ด.ญ., เด็กชาย, เด็กหญิง, นายแพทย์,
  แพทย์หญิง, นพ., พญ., ดร., คุณ and คุณป้า/คุณลุง/... ) or Mr/Mrs/Ms/Miss/Khun: the first name and, when one space
  follows, the surname. The honorific is kept. Thai writes no spaces between words, so a name glued to the next
  words takes them with it (over-redaction is the safe error). Words that merely begin with an honorific
  (คุณภาพ, ขอบคุณ, นายก, นายจ้าง, ทนาย, นางพยาบาล, ...) and คุณ as the pronoun "you" (คุณควร..., คุณช่วย...)
  are left alone.

Matching runs on a *view* of the text in which Thai digits, full-width forms, odd dashes and odd spaces are
mapped to ASCII one character for one, so positions line up and everything else is kept as written. Dates
(30/09/2569, 2026-09-30, ๑๒ มี.ค. ๖๙), times, amounts, years, hotlines (1111, 1555, 191, 1669), document
numbers (นร ๑๐๐๘/ว๑๒๓) and parcel tracking numbers (EF123456789TH, TH0123456789) are left alone: none is a
valid phone/ID shape between the boundaries used here.
"""

from __future__ import annotations

import base64
import bisect
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

NATIONAL_ID = "NATIONAL_ID"
PHONE = "PHONE"
EMAIL = "EMAIL"
BANK_ACCOUNT = "BANK_ACCOUNT"
LINE_ID = "LINE_ID"
NAME = "NAME"
KINDS = (NATIONAL_ID, PHONE, EMAIL, BANK_ACCOUNT, LINE_ID, NAME)
TRUNCATION_MARK = "…[ตัดทอน]"


def placeholder(kind: str) -> str:
    return f"[REDACTED:{kind}]"


_PLACEHOLDER_RE = re.compile(r"\[REDACTED:(" + "|".join(KINDS) + r")\]")

# --- the ASCII view --------------------------------------------------------------------------------
_VIEW: dict[int, int] = {0x0E50 + i: ord("0") + i for i in range(10)}  # Thai digits
_VIEW.update({0xFF01 + i: 0x21 + i for i in range(0x5E)})  # full-width ASCII forms (０-９, ＠, －, （）...)
_VIEW.update({c: ord("-") for c in (0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0xFE63)})
_VIEW.update({c: ord(" ") for c in (0x00A0, 0x2007, 0x202F, 0x3000, 0x200B, 0x2009, 0x200A)})


_VIEWED = re.compile("[" + "".join(re.escape(chr(c)) for c in sorted(_VIEW)) + "]")


def ascii_view(text: str) -> str:
    """Same length as `text`: digits, punctuation and spaces of other forms as their ASCII equivalents."""
    # str.translate walks every character in Python's slow path for Thai text: most texts need nothing changed.
    return text.translate(_VIEW) if _VIEWED.search(text) else text


# --- patterns (on the view) --------------------------------------------------------------------------
# Between any two digits of a phone: dash, dot, spaces, a closing parenthesis, a slash or an underscore (081/234/5678,
# 081_234_5678). Not a comma or a colon: they join amounts (1,500), times (10:30) and lists of numbers.
_SEP = r"[ \t)\-./_]{0,3}"


def _digits(n: int) -> str:
    return r"(?:" + _SEP + r"\d){" + str(n) + "}"


_PHONE_TAIL = r"(?:[689]" + _digits(8) + r"|[2-7]" + _digits(7) + r")"  # the number after the leading 0
_PHONE_RE = re.compile(
    # not inside a longer token (a tracking number such as EE053456789TH) unless after a phone label
    r"(?:(?<![0-9A-Za-z+])|(?<=[Tt]el)|(?<=TEL)|(?<=[Mm]obile)|(?<=[Pp]hone)|(?<=[Cc]all))(?<![0-9][-.])"
    r"(?:\(\s?(?:\+|00)?\s?66\s?\)|(?:\+|00)\s?66|66)" + _SEP + r"(?:\(\s?0\s?\)" + _SEP + r"|0" + _SEP + r")?" + _PHONE_TAIL
    + r"|(?:(?<![0-9A-Za-z+])|(?<=[Tt]el)|(?<=TEL)|(?<=[Mm]obile)|(?<=[Pp]hone)|(?<=[Cc]all))(?<![0-9][-.])"
    r"(?:\(\s?)?0" + _SEP + _PHONE_TAIL
    + r"(?![0-9])(?![-.]\d)"
)
# A date written with dashes, dots or slashes is not a phone even when a number follows it.
_DATE_START_RE = re.compile(r"(?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|1[0-2])[-./](?:\d{4}|\d{2})(?!\d)")
# A phone written with slashes or underscores has that one separator between all its groups (spaces and a parenthesis
# may pad it) and a first group of 2-3 digits, or 4 when two more groups follow: 02/123/4567, 081/234/5678,
# 0812/345/678. Not a phone: a document number (ศธ 04010/1234, กค 0645.6/12345), a date followed by a time or a
# number (08/12/2569 10.30, 2569/08/15 10.30.00, เลขที่ 05/2569 123), or the rest of a date (15/08/2569/2570).
_INTL_PREFIX_RE = re.compile(r"(?:\(\s?(?:\+|00)?\s?66\s?\)|(?:\+|00)\s?66|66)" + _SEP + r"(?:\(\s?0\s?\)" + _SEP + r")?")
_GROUP_SEP_RE = re.compile(r"(?<=\d)\D+(?=\d)")
_DATE_TAIL_RE = re.compile(r"(?<![0-9])[0-9]{1,2}[ \t]?/[ \t]?\Z")

_ID_SEP = r"(?:[ \t]{0,2}[-.][ \t]{0,2}|[ \t]{1,2})?"
_NATIONAL_ID_RE = re.compile(r"(?<![0-9])(?<![0-9][-.])\d" + _ID_SEP + r"\d{4}" + _ID_SEP + r"\d{5}" + _ID_SEP + r"\d{2}"
                             + _ID_SEP + r"\d(?![0-9])(?![-.]\d)")

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]*[A-Za-z0-9])?"
# A domain typed carelessly (somchai@gmail .com, somchai@gmail,com, moi ,go ,th): a space around a dot or a comma
# for it counts when the domain ends in a TLD people use here; any other ending needs plain dots ("me@home, please").
# Plain dots are tried first (the usual address costs what it did); they give way when a careless separator and such
# a TLD follow, so "somchai@mail.gmail ,com" is one address, not "somchai@mail.gmail" and ",com".
_EMAIL_TLD = r"(?:(?i:com|net|org|edu|gov|info|biz|io|th)|ไทย)(?![A-Za-z0-9])"
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+"
    r"(?:\s?@\s?|\s?[(\[][Aa][Tt][)\]]\s?)"
    r"(?:(?:" + _LABEL + r"\.)+(?:[A-Za-z]{2,24}|ไทย)(?![A-Za-z0-9])(?![ \t]?[.,][ \t]?" + _EMAIL_TLD + ")"
    r"|(?:" + _LABEL + r"[ \t]?[.,][ \t]?)+" + _EMAIL_TLD + r"(?!\.[A-Za-z0-9]))"
)
# Spelled out to dodge filters: "somchai at gmail dot com", "somchai [at] gmail [dot] co [dot] th".
_SPELLED_AT = r"\s*[\[(]?\s*(?:at|แอท)\s*[\])]?\s*"
_SPELLED_DOT = r"\s*[\[(]?\s*(?:dot|ดอท)\s*[\])]?\s*|\."
_EMAIL_SPELLED_RE = re.compile(
    r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]+" + _SPELLED_AT + r"[A-Za-z0-9\-]+(?:(?:" + _SPELLED_DOT + r")[A-Za-z0-9\-]+)*"
    r"(?:" + _SPELLED_DOT + r")(?:com|net|org|th|info|biz|edu|gov|io|me|co)(?![A-Za-z0-9])", re.IGNORECASE)
_BANK_RE = re.compile(r"(?<![0-9A-Za-z\-])(?:\d{10,12}|\d{2,4}(?:-\d{1,6}){2,4})(?![0-9A-Za-z])(?!-\d)")

# LINE: an explicit trigger, optional ":" / "=" / "คือ", then the id (ASCII, 3-20 characters as LINE allows).
_LINE_TRIGGER = (r"(?:ไลน์\s*(?:ไอดี|id)|ไอดี\s*ไลน์|แอด\s*ไลน์|(?<!ออน)ไลน์|(?<![A-Za-z])(?:line\s*-?\s*id|id\s*line|add\s*line|line)"
                 r"|แอด\s*line)")
_LINE_RE = re.compile("(?P<t>" + _LINE_TRIGGER + ")" + r"(?P<strong>\s*(?:[:=]|คือ|ชื่อ|มาที่|ที่)\s*|\s*)(?P<v>@?[A-Za-z0-9][A-Za-z0-9._\-]{2,18}[A-Za-z0-9_])"
                      r"(?![A-Za-z0-9@])", re.IGNORECASE)
_HANDLE_RE = re.compile(r"(?<![A-Za-z0-9._%+\-@\]/])(?P<v>@[A-Za-z0-9._\-]{1,19}[A-Za-z0-9_])(?![A-Za-z0-9@])")
# Words that follow a bare "LINE" in ordinary sentences ("ช่องทาง LINE Official Account"): not ids.
_LINE_WORDS = frozenset("""oa official app application pay man notify group groups chat call calls account accounts
today login shopping id the and or to for is was a an of in on at it also too only please thai th service services
with we our my your ok voom sticker stickers shop mobile web website chatbot bot ได้ message messages me us you them
but not no yes so if then than this that there here from by as be been are were will would can could should""".split())

# A LINE "add friend" link carries the id in its path: line.me/ti/p/~somchai99 (personal) or /p/@dga.th (official).
_LINE_URL_RE = re.compile(r"line\.me/(?:R/)?ti/p/(?P<v>[~@]?[A-Za-z0-9._\-]*[A-Za-z0-9_])", re.IGNORECASE)

# Official LINE accounts published to citizens (not personal data). Agency codes from the registry count too.
OFFICIAL_LINE_ACCOUNTS = frozenset({"dga.th", "dgathai", "egov", "thaiid", "sso1506", "1111", "1555", "callcenter1111",
                                    "pmdu1111", "govchannel", "thaigov"})
_OFFICIAL_SUFFIXES = ("", ".th", "th", "thai", "thailand", "official", "_official", ".official", ".go.th")

# Names. Longest honorific first so นางสาว wins over นาง and นายแพทย์ over นาย.
_THAI_HONORIFICS = ("นางสาว", "นายแพทย์", "แพทย์หญิง", "เด็กชาย", "เด็กหญิง", "นาง", "นาย", "น.ส.", "นส.", "ด.ช.", "ด.ญ.",
                    "ดช.", "ดญ.", "นพ.", "พญ.", "ดร.",
                    "คุณป้า", "คุณลุง", "คุณน้า", "คุณยาย", "คุณตา", "คุณหมอ", "คุณครู", "คุณพี่", "คุณน้อง", "คุณ")
_THAI_LETTERS = "\u0e01-\u0e2e\u0e30-\u0e3a\u0e40-\u0e45\u0e47-\u0e4e"  # letters, vowels, tones; not digits, ฯ, ๆ, ฿
_NAME_RE = re.compile(
    r"(?P<h>" + "|".join(re.escape(h) for h in _THAI_HONORIFICS) + r")[ \t]?(?P<v>[" + _THAI_LETTERS + r"]+)"
    r"(?:[ \t](?P<s>[" + _THAI_LETTERS + r"]+))?"
)
_EN_NAME_RE = re.compile(r"(?<![A-Za-z])(?:Mrs|Mr|Ms|Miss|Khun|MRS|MR|MS|MISS|KHUN)\.?[ \t]?"
                         r"(?P<v>[A-Z][a-z]+(?:[ \t][A-Z][a-z]+)?)(?![A-Za-z])")
# A Thai honorific counts at a word start. Thai writes "ติดต่อนายสมชาย" without a space, so a Thai letter before
# it is fine, except the few words that end in one ("ทนาย", "ขอบคุณ", "พระคุณ", "บุญคุณ").
_NOT_A_WORD_START = {"นาย": ("ท",), "คุณ": ("ขอบ", "พระ", "บุญ", "ทุน", "ไม่รู้")}
# First words that make the honorific part of an ordinary word (นายก, นายจ้าง, นางพยาบาล, คุณภาพ).
_NOT_A_NAME = {
    "นาย": ("กรัฐมนตรี", "กเทศมนตรี", "กองค์การ", "กอบต", "กอบจ", "กสภา", "กสมาคม", "จ้าง", "อำเภอ", "ทะเบียน", "หน้า",
            "ด่าน", "ช่าง", "ทหาร", "ตรวจ", "สถานี", "ร้อย", "พล", "ประกัน", "ธนาคาร", "ทุน", "ห้าง", "พราน", "หมวด",
            "สิบ", "เรือ", "กอง", "งาน", "ท่า", "ตำรวจ", "ประตู", "แบบ", "ท้าย", "ทาส", "ใหญ่"),
    "นาง": ("พยาบาล", "ฟ้า", "งาม", "แบบ", "เอก", "ร้าย", "สนม", "กำนัล", "ใน", "ละคร", "รำ", "ไม้", "เงือก", "สาว"),
    "คุณ": ("ภาพ", "ค่า", "สมบัติ", "ธรรม", "ประโยชน์", "ลักษณะ", "วุฒิ", "งาม", "ความ", "วิเศษ", "ากร", "ูปการ",
            # the pronoun "you"
            "ควร", "ช่วย", "สามารถ", "ต้อง", "อาจ", "คง", "ทำ", "ได้", "ไม่", "จะ", "เป็น", "มี", "ให้", "พูด", "บอก", "ยัง",
            "กรุณา", "เคย", "อยาก", "แม่", "พ่อ", "ใจดี", "เก่ง", "สวย", "น่ารัก", "รู้", "เอง", "ก็", "ต้องการ", "คิด", "เห็น", "ใช้", "ตอบ", "ไป", "มาก", "ๆ"),
}
# Words that cannot start a name or surname: particles and common verbs that follow a name in a sentence.
_NAME_STOP = ("ที่", "ซึ่ง", "ได้", "ให้", "ช่วย", "บริการ", "ครับ", "ค่ะ", "คะ", "นะ", "เป็น", "ก็", "และ", "กับ", "ทำ", "พูด",
              "ไม่", "ยัง", "ตอบ", "เจ้าหน้าที่", "จะ", "ว่า", "คือ", "แล้ว", "มาก", "ทุก", "ท่าน", "ติดต่อ", "โทร", "อายุ",
              "เลข", "อยู่", "ผู้", "ควร", "ต้อง", "ขอ", "รอ", "เรื่อง", "ของ", "ด้วย", "เคย", "อยาก", "กรุณา", "บอก",
              "ใช้", "เอง", "หรือ", "แต่", "เพราะ", "จึง", "ก่อน", "หลัง", "นั้น", "นี้", "เขา", "เธอ", "พวก", "ทั้ง",
              "ดูแล", "แนะนำ", "อธิบาย", "ประจำ", "เมื่อ", "ตั้งแต่", "จน", "ถึง", "อีก", "เพิ่ง", "กำลัง", "ค่ะ", "จ้า")


@dataclass(frozen=True)
class Redaction:
    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


Finder = Callable[[str, str], Iterable[tuple[int, int]]]


def _pattern(regex: re.Pattern[str], accept: Callable[[str], bool] | None = None) -> Finder:
    """Spans of `regex` matches on the view (the `v` group when the pattern has one), filtered by `accept`."""

    def find(text: str, view: str) -> Iterable[tuple[int, int]]:
        for m in regex.finditer(view):
            group = "v" if "v" in regex.groupindex else 0
            if accept is None or accept(m.group(group)):
                yield m.span(group)

    return find


def _only_digits(s: str) -> str:
    return "".join(c for c in s if "0" <= c <= "9")


def _valid_id(candidate: str) -> bool:
    digits = _only_digits(candidate)
    if len(digits) != 13 or digits[0] == "0":
        return False
    total = sum(int(digits[i]) * (13 - i) for i in range(12))
    return (11 - total % 11) % 10 == int(digits[12])


def _phones(text: str, view: str) -> Iterable[tuple[int, int]]:
    for m in _PHONE_RE.finditer(view):
        candidate = m.group()
        if _DATE_START_RE.match(candidate):
            continue
        if ("/" in candidate or "_" in candidate) and not _slash_grouped(view, m.start(), candidate):
            continue
        yield m.span()


def _slash_grouped(view: str, start: int, candidate: str) -> bool:
    """Whether a phone candidate holding "/" or "_", found at `start` of `view`, is grouped the way a phone written
    with them is (see the comment above _INTL_PREFIX_RE), not a document number or a piece of a date."""
    prefix = _INTL_PREFIX_RE.match(candidate)
    number = candidate[prefix.end():] if prefix else candidate
    seps = list(_GROUP_SEP_RE.finditer(number))
    if seps:
        kinds = {sep.group().strip(" \t()") for sep in seps}
        if len(kinds) != 1 or kinds.pop() not in ("/", "_"):
            return False
        first = len(_only_digits(number[:seps[0].start()]))
        if not (2 <= first <= 3 or first == 4 and len(seps) >= 2):
            return False
    return _DATE_TAIL_RE.search(view, max(0, start - 6), start) is None


def _bank(candidate: str) -> bool:
    return 10 <= len(_only_digits(candidate)) <= 12


@lru_cache(maxsize=1)
def _agency_codes() -> frozenset[str]:
    try:
        from services.contracts.agencies import get_registry

        return frozenset(code.lower() for code in get_registry().codes())
    except Exception:  # the redactor must work without the registry (it only widens the official list)
        return frozenset()


def is_official_line_account(handle: str) -> bool:
    """An @handle published by a government body: a listed account, or an agency code with a usual suffix."""
    name = handle.lstrip("@").lower()
    if name in OFFICIAL_LINE_ACCOUNTS:
        return True
    return any(name.endswith(sfx) and name[: len(name) - len(sfx)] in _agency_codes() for sfx in _OFFICIAL_SUFFIXES)


def _line_ids(text: str, view: str) -> Iterable[tuple[int, int]]:
    for m in _LINE_RE.finditer(view):
        value = m.group("v")
        trigger = m.group("t").lower()
        bare = not m.group("strong").strip() and not value.startswith("@") and trigger in ("line", "ไลน์")
        if bare and (value.lower() in _LINE_WORDS or value.isalpha() and value.lower().startswith(("official", "app"))):
            continue  # "LINE Official Account", "ช่องทาง LINE app": the product, not an id
        if bare and trigger == "line" and value.isalpha():
            continue  # English prose ("my line is busy", "LINE number"): only an id-like word after a bare "line"
        if is_official_line_account(value):
            continue
        yield m.span("v")
    for m in _LINE_URL_RE.finditer(view):
        if not is_official_line_account(m.group("v").lstrip("~")):
            yield m.span("v")
    for m in _HANDLE_RE.finditer(view):
        if not is_official_line_account(m.group("v")):
            yield m.span("v")


def _thai_word_start(view: str, pos: int, honorific: str) -> bool:
    if pos == 0 or not ("\u0e01" <= view[pos - 1] <= "\u0e4e"):
        return True
    return not view[max(0, pos - 8):pos].endswith(_NOT_A_WORD_START.get(honorific[:3], ()))


def _names(text: str, view: str) -> Iterable[tuple[int, int]]:
    pos = 0
    while (m := _NAME_RE.search(view, pos)) is not None:
        # A rejected candidate may hide a real one inside it ("ขอบคุณคุณสมศรี"): look again one character on.
        pos = m.start() + 1
        honorific, first = m.group("h"), m.group("v")
        if not _thai_word_start(view, m.start("h"), honorific):
            continue
        base = "คุณ" if honorific.startswith("คุณ") and honorific != "คุณ" else honorific
        if len(first) < 2 or first.startswith(_NOT_A_NAME.get(base, ())) or first.startswith(_NAME_STOP):
            continue
        if honorific != base and first.startswith(_NOT_A_NAME["คุณ"]):
            continue
        surname = m.group("s")
        if surname and not surname.startswith(_NAME_STOP):
            yield m.start("v"), m.end("s")
        else:
            yield m.span("v")
        pos = m.end()
    for m in _EN_NAME_RE.finditer(view):
        yield m.span("v")


# What a text must hold for a finder to find anything there (a necessary condition, checked in a fraction of the
# finder's time): most texts hold nothing personal, and each finder's pattern costs 2-14 µs on a short one.
Gate = Callable[[str], bool]
# Nine digits, anywhere: a phone has 9 (0 + 8) or more, a national ID 13, a bank account 10-12 (`_bank`).
_ENOUGH_DIGITS = re.compile(r"\d(?:\D*\d){8}")
_BRACKETED_AT = re.compile(r"[(\[][Aa][Tt][)\]]")  # `_EMAIL_RE`'s "(at)" or "[at]"
_AT_WORD = re.compile("at|แอท", re.IGNORECASE)  # the spelled-out "@" (the same flag: "at" folds as the finder's)
_LINE_WORD = re.compile("line|ไลน์", re.IGNORECASE)  # in every trigger of `_LINE_RE`, and in `_LINE_URL_RE`


def _enough_digits(view: str) -> bool:
    return _ENOUGH_DIGITS.search(view) is not None


def _email_mark(view: str) -> bool:
    return "@" in view or _BRACKETED_AT.search(view) is not None


def _line_mark(view: str) -> bool:
    return "@" in view or _LINE_WORD.search(view) is not None  # `_HANDLE_RE` needs an "@"


def _always(view: str) -> bool:
    return True


# Order matters: e-mail before LINE (an e-mail holds "@"), national ID before phone and bank (13 digits hold a
# 10-digit run), phone before bank (a 10-digit mobile is a phone), LINE after phone ("ไลน์ 0812345678" is a phone).
_FINDERS: tuple[tuple[str, Finder, Gate], ...] = (
    (EMAIL, _pattern(_EMAIL_RE), _email_mark),
    (EMAIL, _pattern(_EMAIL_SPELLED_RE), lambda view: _AT_WORD.search(view) is not None),
    (NATIONAL_ID, _pattern(_NATIONAL_ID_RE, _valid_id), _enough_digits),
    (PHONE, _phones, _enough_digits),
    (BANK_ACCOUNT, _pattern(_BANK_RE, _bank), _enough_digits),
    (LINE_ID, _line_ids, _line_mark),
    (NAME, _names, _always),
)


def _apply(text: str, view: str, taken: list[tuple[int, int]], kind: str, find: Finder, counts: Counter) -> str:
    """`text` with what `find` finds on its ASCII `view` replaced by `kind`'s placeholder, never inside one of the
    earlier placeholders at `taken` (sorted and disjoint: bisect, not a scan per match)."""
    starts = [s for s, _ in taken]
    out: list[str] = []
    last = 0
    for start, end in sorted(set(find(text, view))):
        if start < last or start == end:
            continue
        i = bisect.bisect_left(starts, end) - 1  # the last placeholder starting before this match ends
        if i >= 0 and taken[i][1] > start:
            continue
        out.append(text[last:start])
        out.append(placeholder(kind))
        counts[kind] += 1
        last = end
    if not out:
        return text
    out.append(text[last:])
    return "".join(out)


def redact(text: str) -> Redaction:
    """Replace personal data in `text` with typed placeholders; return the text and counts by kind."""
    counts: Counter = Counter()
    view, taken = ascii_view(text), [m.span() for m in _PLACEHOLDER_RE.finditer(text)]
    for kind, find, gate in _FINDERS:
        if not gate(view):
            continue
        redacted = _apply(text, view, taken, kind, find, counts)
        if redacted is not text:  # most texts hold nothing personal: the view is computed once for all finders
            text, view, taken = redacted, ascii_view(redacted), [m.span() for m in _PLACEHOLDER_RE.finditer(redacted)]
    return Redaction(text, {k: counts[k] for k in KINDS if counts[k]} if counts else {})


def redact_to_limit(text: str, limit: int) -> Redaction:
    """`redact`, then cut to `limit` characters with TRUNCATION_MARK if redaction made it longer than that.
    A placeholder is never cut in half: the cut moves to its start."""
    result = redact(text)
    if len(result.text) <= limit:
        return result
    cut = max(0, limit - len(TRUNCATION_MARK))
    opening = result.text.rfind("[REDACTED:", 0, cut)
    if opening != -1 and result.text.find("]", opening) >= cut:
        cut = opening
    kept = result.text[:cut] + TRUNCATION_MARK
    return Redaction(kept, count_placeholders(kept))


def text_limits(model: type, names: Iterable[str]) -> dict[str, int]:
    """{field: its max_length} for the free-text fields `names` of a pydantic model (the contract's own limits)."""
    return {name: next(m.max_length for m in model.model_fields[name].metadata if hasattr(m, "max_length"))
            for name in names}


def redacted_fields(data: Any, limits: Mapping[str, int]) -> dict[str, str]:
    """The fields of `data` named in `limits` that hold personal data, redacted and cut to their limit when
    redaction made them longer: {field: new text}, empty when none did (most texts)."""
    update = {}
    for name, limit in limits.items():
        value = getattr(data, name, None)
        if value:
            redacted = redact_to_limit(value, limit)
            if redacted.text != value:
                update[name] = redacted.text
    return update


def count_placeholders(text: str | None) -> dict[str, int]:
    """Redactions recorded in an already redacted text (the original is gone by then)."""
    if not text or "[REDACTED:" not in text:  # most texts: no pattern search, no counter
        return {}
    counts = Counter(m.group(1) for m in _PLACEHOLDER_RE.finditer(text))
    return {k: counts[k] for k in KINDS if counts[k]}


# --- dead letters ----------------------------------------------------------------------------------------
# Fields that are personal by name and dropped outright from a dead letter (the feedback form's birth year).
BIRTH_KEYS = re.compile(r"birth|\bdob\b|^dob$|ปีเกิด|วันเกิด", re.IGNORECASE)
# The same fields in a value that is not JSON (truncated, binary, nested too deep): `"birth_year": 2500,`.
# Names start at a word boundary and are bounded, so a hostile run of letters costs linear time, not quadratic.
_BIRTH_FIELD_RE = re.compile(
    r"""(?<![A-Za-z_\-])["']?[A-Za-z_\-]{0,32}(?:birth|dob)[A-Za-z_\-]{0,32}["']?\s*[:=]\s*(?:"[^"]{0,64}"|'[^']{0,64}'|[^,;}\]\s]{0,64})\s*,?"""
    r"""|["']?(?:ปีเกิด|วันเกิด)["']?\s*[:=]?\s*[^,;}\]\s]{0,64}\s*,?""",
    re.IGNORECASE,
)
SCRUB_FAILED = b'{"dead_letter_scrub":"failed"}'


def scrub_text(text: str) -> str:
    """Free text of unknown shape: birth-year-looking fields removed, then personal data redacted."""
    return redact(_BIRTH_FIELD_RE.sub("", text)).text


FieldRules = Mapping[str, Callable[[object], object]]


def _scrub_value(value: object, drop: re.Pattern[str], nested: int = 0, rules: FieldRules | None = None) -> object:
    if isinstance(value, str):
        stripped = value.lstrip()
        if nested < 2 and stripped[:1] in ("{", "["):  # JSON carried as a string (CloudEvents `data`)
            try:
                from services.contracts import safejson

                inner = safejson.loads(stripped)
            except ValueError:
                return scrub_text(value)
            return json.dumps(_scrub_value(inner, drop, nested + 1, rules), ensure_ascii=False)
        return scrub_text(value)
    if isinstance(value, list):
        return [_scrub_value(item, drop, nested, rules) for item in value]
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            if drop.search(key):
                continue
            if key == "data_base64" and isinstance(item, str) and nested < 2:
                out[key] = _scrub_base64(item, drop, nested + 1, rules)
                continue
            if rules and key in rules:
                item = rules[key](item)
            out[scrub_text(key)] = _scrub_value(item, drop, nested, rules)
        return out
    if isinstance(value, int) and not isinstance(value, bool) and len(str(value)) >= 9:
        # A national ID or account number sent as a JSON number: the placeholder (a string) replaces it.
        redacted = redact(str(value))
        return redacted.text if redacted.total else value
    return value  # other numbers, booleans, null: nothing to redact (birth years are dropped by key)


def _scrub_base64(encoded: str, drop: re.Pattern[str], nested: int, rules: FieldRules | None) -> str:
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (ValueError, TypeError):
        return scrub_text(encoded)
    return base64.b64encode(_scrub_bytes(raw, drop, nested, rules)).decode()


def _scrub_bytes(value: bytes, drop: re.Pattern[str], nested: int = 0, rules: FieldRules | None = None) -> bytes:
    from services.contracts import safejson

    try:
        decoded = safejson.loads(value)
    except ValueError:  # not JSON, not UTF-8, or nested too deep: treat the whole value as text
        return scrub_text(value.decode("utf-8", errors="replace")).encode()
    return json.dumps(_scrub_value(decoded, drop, nested, rules), ensure_ascii=False, separators=(",", ":")).encode()


def scrub_payload(value: bytes | None, *, drop: re.Pattern[str] = BIRTH_KEYS, rules: FieldRules | None = None) -> bytes:
    """What a dead letter may carry of a record's value: JSON with every string redacted (keys too) and the
    fields matching `drop` removed (`rules` first transforms named fields); anything else redacted as text. Never raises: a dead letter must be
    written whatever the record holds, so a failure gives SCRUB_FAILED instead of the raw value."""
    if not value:
        return b""
    try:
        return _scrub_bytes(bytes(value), drop, 0, rules)
    except Exception:
        return SCRUB_FAILED
