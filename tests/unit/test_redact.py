"""The comment redactor against a corpus of realistic Thai and English comments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.contracts.thai_calendar import ascii_to_thai_digits, is_valid_thai_national_id
from services.feedback.redact import count_placeholders, placeholder, redact


def _with_check_digit(first12: str) -> str:
    total = sum(int(first12[i]) * (13 - i) for i in range(12))
    return first12 + str((11 - total % 11) % 10)


ID1 = _with_check_digit("110370207192")  # 1103702071927
ID2 = _with_check_digit("310050123456")
ID3 = _with_check_digit("570010045678")
BAD_ID = ID1[:-1] + str((int(ID1[-1]) + 1) % 10)


def dashed(nid: str, sep: str = "-") -> str:
    return sep.join([nid[0], nid[1:5], nid[5:10], nid[10:12], nid[12]])


NID = placeholder("NATIONAL_ID")
PHONE = placeholder("PHONE")
EMAIL = placeholder("EMAIL")
BANK = placeholder("BANK_ACCOUNT")

# (comment, expected redacted text)
CORPUS = [
    # --- national IDs ---
    (f"เลขบัตรประชาชนของดิฉัน {ID1} ค่ะ", f"เลขบัตรประชาชนของดิฉัน {NID} ค่ะ"),
    (f"บัตร ปชช. {dashed(ID2)} ยังไม่ได้รับเงินคืน", f"บัตร ปชช. {NID} ยังไม่ได้รับเงินคืน"),
    (f"My ID is {dashed(ID3, ' ')}, please check.", f"My ID is {NID}, please check."),
    (f"เลขประจำตัว {ascii_to_thai_digits(ID1)} ครับ", f"เลขประจำตัว {NID} ครับ"),
    (f"ID:{ID2}.", f"ID:{NID}."),
    (f"ลูกชาย {dashed(ascii_to_thai_digits(ID3))} ลงทะเบียนไม่ได้", f"ลูกชาย {NID} ลงทะเบียนไม่ได้"),
    # --- phones ---
    ("โทรกลับที่ 081-234-5678 ด้วยค่ะ", f"โทรกลับที่ {PHONE} ด้วยค่ะ"),
    ("เบอร์ 0812345678 ติดต่อไม่ได้", f"เบอร์ {PHONE} ติดต่อไม่ได้"),
    ("ติดต่อ ๐๘๙-๑๒๓-๔๕๖๗ ได้ตลอด", f"ติดต่อ {PHONE} ได้ตลอด"),
    ("call me on +66 81 234 5678 after 5pm", f"call me on {PHONE} after 5pm"),
    ("+66812345678 is my LINE number", f"{PHONE} is my LINE number"),
    ("สำนักงานเขต 02-123-4567 ไม่มีคนรับสาย", f"สำนักงานเขต {PHONE} ไม่มีคนรับสาย"),
    ("ที่บ้านเบอร์ 02 123 4567", f"ที่บ้านเบอร์ {PHONE}"),
    ("ร้านที่เชียงใหม่ 053-123-456 ครับ", f"ร้านที่เชียงใหม่ {PHONE} ครับ"),
    ("+66 2 123 4567 (office)", f"{PHONE} (office)"),
    ("มือถือ 06-1234-5678 นะคะ", "มือถือ 06-1234-5678 นะคะ".replace("06-1234-5678", PHONE)),
    ("เบอร์ 095.123.4567", f"เบอร์ {PHONE}"),
    # --- e-mail ---
    ("ส่งเอกสารไปที่ somchai.jaidee@gmail.com แล้วแต่ไม่มีตอบกลับ", f"ส่งเอกสารไปที่ {EMAIL} แล้วแต่ไม่มีตอบกลับ"),
    ("contact: malee_s+gov@hotmail.co.th", f"contact: {EMAIL}"),
    ("อีเมลnoi.p@moi.go.thค่ะ", f"อีเมล{EMAIL}ค่ะ"),
    # --- bank accounts ---
    ("โอนเงินเข้าบัญชี 123-4-56789-0 กสิกรไทยแล้ว", f"โอนเงินเข้าบัญชี {BANK} กสิกรไทยแล้ว"),
    ("บัญชีออมทรัพย์ 0201234567 ธ.ก.ส.", f"บัญชีออมทรัพย์ {BANK} ธ.ก.ส."),
    ("refund to account 987-6-54321-0 please", f"refund to account {BANK} please"),
    ("บัญชีออมสิน 020-12-345678-9", f"บัญชีออมสิน {BANK}"),
    ("เลขบัญชี ๑๒๓๔๕๖๗๘๙๐", f"เลขบัญชี {BANK}"),
    # --- several at once ---
    (f"ชื่อสมศรี {ID1} โทร 0891234567 อีเมล sri@example.com",
     f"ชื่อสมศรี {NID} โทร {PHONE} อีเมล {EMAIL}"),
    ("Phone 081 234 5678 or 02-987-6543, mail a.b@c.org", f"Phone {PHONE} or {PHONE}, mail {EMAIL}"),
    # --- false positives left alone: dates, amounts, times, years, counts ---
    ("มาติดต่อวันที่ 30/09/2569 รอคิวนานมาก", None),
    ("วันที่ ๓๐/๐๙/๒๕๖๙ เวลา ๑๐:๓๐ น.", None),
    ("นัดวันที่ 2026-09-30 เวลา 14:00", None),
    ("ค่าธรรมเนียม 1,500 บาท แพงเกินไป", None),
    ("จ่ายไป 1500000 บาท สำหรับใบอนุญาต", None),
    ("ค่าปรับ 12,345,678.50 บาท", None),
    ("รอคิว 45 นาที ได้คิวที่ 128", None),
    ("ปีงบประมาณ 2569 บริการดีขึ้นมาก", None),
    ("โทรสายด่วน 1111 กด 2 สะดวกดี", None),
    ("Service was excellent, staff very helpful. 5 stars!", None),
    ("The app crashed 3 times on 12/03/2026 at 09:15.", None),
    ("เลขที่หนังสือ นร 0505/ว 123 ลงวันที่ 1 ต.ค. 2568", None),
    ("เลขคำขอ 2569-000123 ยังไม่อนุมัติ", None),
    (f"เลข 13 หลักแต่ผิด {BAD_ID} ไม่ใช่บัตร", None),
    ("ผู้สูงอายุใช้แอปยาก ตัวหนังสือเล็ก อยากให้มีเจ้าหน้าที่ช่วย", None),
    ("ควรเพิ่มช่องทาง LINE สำหรับคนต่างจังหวัด", None),
    ("ราคา 99.99 USD, order #12345", None),
]


def test_corpus_is_large_and_ids_are_valid():
    assert len(CORPUS) >= 40
    assert all(is_valid_thai_national_id(n) for n in (ID1, ID2, ID3)) and not is_valid_thai_national_id(BAD_ID)


@pytest.mark.parametrize("comment,expected", CORPUS)
def test_corpus(comment, expected):
    result = redact(comment)
    assert result.text == (comment if expected is None else expected)
    if expected is None:
        assert result.counts == {}
    else:
        assert result.counts == count_placeholders(result.text)
        assert result.total >= 1


def test_counts_by_type_and_placeholders_are_recountable():
    text = f"{ID1} / {dashed(ID2)} / 081-234-5678 / a@b.co / 123-4-56789-0 / 0891112222"
    result = redact(text)
    assert result.counts == {"NATIONAL_ID": 2, "PHONE": 2, "EMAIL": 1, "BANK_ACCOUNT": 1}
    assert count_placeholders(result.text) == result.counts
    assert not any(ch.isdigit() for ch in result.text)


def test_redaction_is_idempotent_and_keeps_other_text():
    once = redact(f"สวัสดีค่ะ {ID1} ขอบคุณ ๕ ดาว")
    assert redact(once.text).text == once.text and redact(once.text).counts == {}
    assert once.text.startswith("สวัสดีค่ะ ") and once.text.endswith(" ขอบคุณ ๕ ดาว")  # Thai digits elsewhere untouched


def test_invalid_checksum_is_not_an_id_but_mixed_separators_are():
    assert redact(BAD_ID).counts.get("NATIONAL_ID") is None
    # People mix separators; the check digit, not the punctuation, is what tells an ID from another number.
    mixed = f"{ID1[0]}-{ID1[1:5]} {ID1[5:10]}-{ID1[10:12]} {ID1[12]}"
    assert redact(mixed).counts == {"NATIONAL_ID": 1}
    bad_mixed = f"{BAD_ID[0]}-{BAD_ID[1:5]} {BAD_ID[5:10]}-{BAD_ID[10:12]} {BAD_ID[12]}"
    assert "NATIONAL_ID" not in redact(bad_mixed).counts


# Probe findings: a slash or underscore between a phone's groups, a stray space or a comma in an e-mail's domain.
SEPARATOR_SPELLINGS = [
    ("081/234/5678", PHONE),
    ("081_234_5678", PHONE),
    ("โทร 081/234/5678 ค่ะ", f"โทร {PHONE} ค่ะ"),
    ("เบอร์ 02/123/4567 ไม่มีคนรับ", f"เบอร์ {PHONE} ไม่มีคนรับ"),  # Bangkok: 9 digits
    ("ร้านที่เชียงใหม่ 053/123/456", f"ร้านที่เชียงใหม่ {PHONE}"),
    ("มือถือ 06/1234/5678 นะคะ", f"มือถือ {PHONE} นะคะ"),
    ("081/2345678", PHONE),
    ("0812/345/678", PHONE),
    ("081 / 234 / 5678", PHONE),
    ("02_123_4567", PHONE),
    ("๐๘๑/๒๓๔/๕๖๗๘", PHONE),
    ("+66 81/234/5678", PHONE),
    ("(02)/123/4567", PHONE),
    ("โทร 081/234/5678, 02/123/4567", f"โทร {PHONE}, {PHONE}"),
    ("โทร 02-123-4567/081-234-5678", f"โทร {PHONE}/{PHONE}"),  # two phones joined by a slash: both
    ("somchai@gmail .com", EMAIL),
    ("somchai@gmail,com", EMAIL),
    ("ส่งที่ somchai@gmail . com แล้ว", f"ส่งที่ {EMAIL} แล้ว"),
    ("SOMCHAI@GMAIL , COM", EMAIL),
    ("อีเมลnoi.p@moi ,go ,thค่ะ", f"อีเมล{EMAIL}ค่ะ"),
    ("malee@yahoo.co .th", EMAIL),
    ("a@example ,ไทย", EMAIL),
    ("somchai@mail.gmail ,com ok", f"{EMAIL} ok"),
    ("email somchai@gmail .com, ขอบคุณ", f"email {EMAIL}, ขอบคุณ"),
    ("a@b.com, c@d.com", f"{EMAIL}, {EMAIL}"),
]

# What a slash, an underscore or a comma also joins: none is personal data.
SEPARATOR_LOOKALIKES = [
    "30/09/2569", "1/10/2569", "2569/09/30", "30/9/69", "08/12/2569", "08/12/2569 10:30", "มาวันที่ 08/12/2569 เวลา 10:30",
    "วันที่ 08/12/2569 10.30 น.", "วันที่ 15/08/2569 10.30 น.", "2569/08/15 10.30.00", "15/08/2569/2570",
    "วันที่ 01/08/2569-30/09/2569", "10:30", "08:30-16:30 09:00-12:00", "1,500 บาท", "12,345.50", "3/4", "ขอเอกสาร 3 / 4 ชุด",
    "นร ๑๐๐๘/ว๑๒๓", "ที่ กค 0645.6/12345", "ที่ กค 0345.6/1234", "ศธ 04010/1234", "ที่ มท 0308/12345", "เลขรับ 0654/2569",
    "คำสั่งที่ 05/2569 123 คน", "EF123456789TH", "IMG_0812_123456", "สายด่วน 1111 1555 191 1669",
    "ติดต่อ @dga, ขอบคุณ", "ติดต่อ @dga,com", "somchai@gmail, ขอบคุณ", "me@home, please", "x@y. z",
]


@pytest.mark.parametrize("comment,expected", SEPARATOR_SPELLINGS)
def test_slash_and_underscore_phones_and_sloppy_email_domains(comment, expected):
    result = redact(comment)
    assert result.text == expected
    assert result.counts == count_placeholders(expected)


@pytest.mark.parametrize("comment", SEPARATOR_LOOKALIKES)
def test_dates_times_amounts_and_document_numbers_with_those_separators_stay(comment):
    result = redact(comment)
    assert result.text == comment and result.counts == {}


def test_a_date_with_slashes_is_shorter_than_any_phone():
    # 08/12/2569 is 8 digits starting 08: a mobile needs 10, so it is a date however the digits are grouped.
    for date in ("08/12/2569", "09/11/2568", "06/01/2570", "02/12/2569", "05/05/2569"):
        assert redact(f"นัดวันที่ {date} ค่ะ").counts == {}
    assert redact("นัดวันที่ 08/12/2569 โทร 081/234/5678").text == f"นัดวันที่ 08/12/2569 โทร {PHONE}"


def test_no_partial_match_inside_longer_numbers():
    assert redact("08123456789012345").counts == {}  # 17 digits: a reference number, not a phone
    assert redact("x" + ID1 + "9").counts == {}


# --- the gates: a finder skipped by its gate would have found nothing ---------------------------------------------
_FRAGMENTS = ["0812345678", "08-1234-5678", "๐๘๑๒๓๔๕๖๗๘", "０８１２３４５６７８", "+66 81 234 5678", "1101700230708",
              "1-1017-00230-70-8", "123-4-56789-0", "1234567890", "12", "3", " ", "-", ".", "(", ")", "[at]", "(at)",
              " at ", "แอท", " dot ", "ดอท", "com", "gmail", "@", "＠", "somchai", "line", "LINE", "lıne", "ไลน์", "id",
              "ไอดี", "แอด", ": ", "คือ", "line.me/ti/p/", "~abc_12", "@abc.def", "คุณ", "นาย", "สมชาย", "ใจดี", "Mr ",
              "Somchai", "ขอบคุณ", "บริการดี", "tel", "Tel.", "EE053456789TH", "31-12-2569", "\u0660\u0661\u0662",
              "\u2013", "\u00a0", "\u3000", "（", "）", "［at］"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=12).map("".join))
def test_a_gate_never_skips_a_finder_that_would_have_found_something(text):
    from services.common import redact as module

    assert module.ascii_view(text) == text.translate(module._VIEW)  # the shortcut of a text with nothing to change
    ungated = tuple((kind, find, module._always) for kind, find, _ in module._FINDERS)
    gated = redact(text)
    original = module._FINDERS
    module._FINDERS = ungated
    try:
        assert redact(text) == gated
    finally:
        module._FINDERS = original
