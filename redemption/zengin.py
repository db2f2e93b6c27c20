"""Zengin (全銀協) 総合振込 files: the bank transfer file finance uploads to pay merchants.

**What the file is.** A 総合振込 (general transfer, 種別コード ``21``) file in the 全銀協 format
("全銀協規定フォーマット", the Zengin format that Japanese banks take in their internet-banking
file upload and on media). It has four record kinds, each exactly 120 bytes:

- one header record (データ区分 ``1``): the remitter (依頼人), its account and the transfer date;
- one data record (データ区分 ``2``) per payee: the payee's bank, branch, account, name, amount;
- one trailer record (データ区分 ``8``): the number of data records and their total amount;
- one end record (データ区分 ``9``).

Every record is followed by CR LF (so a line is 122 bytes with its line end). The bytes are
single-byte CP932 (Shift_JIS): digits, upper-case latin, half-width katakana and a few symbols.
Numeric fields (``N``) are right-aligned and zero-padded; text fields (``C``) are left-aligned
and space-padded.

**The layout** is the table ``LAYOUT`` (field, Japanese name, 1-based start byte, length, kind,
what we write). One generic fixed-width writer (``_write_record``) and one reader
(``_read_record``) are driven by it, so the documentation (``docs/zengin.md``, whose tables
``layout_markdown`` prints) and the code cannot disagree. The layout is the standard 総合振込
layout that banks publish for the 全銀協 format (e.g. the "全銀協制定ファイルフォーマット
【総合振込】" data-layout documents of regional banks, and MUFG's Web21 "総合振込(全銀形式)"
file layout); see ``docs/zengin.md``.

**Choices** (the places where banks differ):

- コード区分 is ``0`` (JIS: the single-byte JIS X 0201 set, which CP932 encodes identically);
- 手形交換所番号 (a numeric field no longer used) is written as 4 spaces, which most banks accept
  (some banks' layouts say ``0000``: change ``fixed`` in its ``Field`` if a bank refuses);
- 振込指定区分 is ``7`` (電信扱 / テレ振込: the only kind banks still offer; a blank means the
  same at the banks that document it);
- 新規コード is ``0``, 識別表示 and the dummies are spaces, 顧客コード1/2 are text (spaces when
  not given);
- bank and branch names (仕向/被仕向 銀行名, 支店名) may be blank (spaces), which banks accept:
  they go by the codes;
- account numbers shorter than 7 digits are zero-padded on the left (the format's rule for
  numeric fields); bank (4), branch (3) and remitter (10) codes must have exactly their length.

**The character set** (what ``is_zengin_text`` accepts, and what ``to_zengin_kana`` produces):

- digits ``0``-``9`` and upper-case latin ``A``-``Z``;
- half-width katakana ``ｱ``-``ﾝ`` (without ``ｦ``, which banks refuse in names, and without the
  small kana ``ｧｨｩｪｫｬｭｮｯ``) and the separate marks ``ﾞ`` ``ﾟ``;
- space and the symbols ``( ) . - / ｢ ｣ \\ ,`` (``\\`` is byte 0x5C, printed ¥ in JIS X 0201).

The long-vowel mark is not in the set: ``ー`` (and half-width ``ｰ``) become ``-``.

**Conversion** (``to_zengin_kana``): hiragana and full-width katakana become half-width
katakana, voiced and semi-voiced kana as two characters (``ガ`` → ``ｶﾞ``, ``パ`` → ``ﾊﾟ``,
``ヴ`` → ``ｳﾞ``); small kana become large (``ァィゥェォッャュョヮ`` → ``ｱｲｳｴｵﾂﾔﾕﾖﾜ``,
``ヵヶ`` → ``ｶｹ``, the same for hiragana and half-width small kana); full-width ASCII
(U+FF01-U+FF5E) becomes ASCII and the full-width space a space; lower-case latin becomes upper
case; ``「」`` become ``｢｣``; ``¥`` ``￥`` ``＼`` become ``\\``; ``ー`` ``ｰ`` ``‐`` ``−`` ``－``
become ``-``.
Anything else (kanji, ``ヲ``/``を``, ``ヰ``/``ヱ``, ``・``, ``@``, emoji, control characters, ...)
raises ``ZenginCharsetError`` naming the field, the 0-based position in the input and the
character. Names are never truncated: too long after conversion is ``ZenginTooLong``.

Pure: no database and no import from the project; the standard library only.
"""

from __future__ import annotations

import datetime
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "LAYOUT",
    "RECORD_LENGTH",
    "ZENGIN_CHARACTERS",
    "Field",
    "Remitter",
    "TransferRecord",
    "ZenginCharsetError",
    "ZenginFieldError",
    "ZenginTooLong",
    "is_zengin_text",
    "layout_markdown",
    "parse_transfer_file",
    "to_zengin_kana",
    "transfer_file",
]

RECORD_LENGTH = 120
LINE_END = b"\r\n"
ENCODING = "cp932"

MAX_AMOUNT = 9_999_999_999  # 振込金額 N(10)
MAX_COUNT = 999_999  # 合計件数 N(6)
MAX_TOTAL = 999_999_999_999  # 合計金額 N(12)
ACCOUNT_TYPES = {"1": "普通", "2": "当座", "4": "貯蓄", "9": "その他"}


# --- errors ---------------------------------------------------------------------------------


class ZenginFieldError(ValueError):
    """A value that cannot be written: ``field`` names it (``remitter.code``,
    ``records[2].amount``: the index is 0-based in the sequence given to ``transfer_file``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


class ZenginCharsetError(ZenginFieldError):
    """A character outside the Zengin set with no conversion: ``position`` is its 0-based index
    in the input text, ``char`` the character."""

    def __init__(self, field: str, position: int, char: str, message: str | None = None) -> None:
        if message is None:
            name = unicodedata.name(char, f"U+{ord(char):04X}")
            message = (
                f"character {char!r} ({name}) at position {position} is not in the Zengin "
                "character set"
            )
        super().__init__(field, message)
        self.position = position
        self.char = char


class ZenginTooLong(ZenginCharsetError):
    """Longer than the field after conversion: ``position`` is ``max_length`` (the first
    character that does not fit, counted in the converted text) and ``char`` that character."""


# --- the character set ----------------------------------------------------------------------

_HALF_KANA = "".join(chr(c) for c in range(0xFF71, 0xFF9E))  # ｱ..ﾝ (without ｦ, small, ｰ)
_MARKS = "\uff9e\uff9f"  # ﾞ ﾟ
_SYMBOLS = " ().-/\uff62\uff63\\,"  # space ( ) . - / ｢ ｣ \ ,
ZENGIN_CHARACTERS = frozenset(
    "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ" + _HALF_KANA + _MARKS + _SYMBOLS
)
"""Every character a Zengin text field may hold (single-byte in CP932)."""

# Full-width katakana (large, unvoiced) -> half-width: the inverse of NFKC on ｱ..ﾝ.
_FULL_TO_HALF = {unicodedata.normalize("NFKC", h): h for h in _HALF_KANA}
_SMALL_TO_LARGE = dict(
    zip(
        "ァィゥェォッャュョヮヵヶｧｨｩｪｫｯｬｭｮ",
        "アイウエオツヤユヨワカケｱｲｳｴｵﾂﾔﾕﾖ",
        strict=True,
    )
)
_SPECIAL = {
    "\u3099": "\uff9e",  # combining voiced mark
    "\u309a": "\uff9f",  # combining semi-voiced mark
    "\u309b": "\uff9e",  # ゛
    "\u309c": "\uff9f",  # ゜
    "\u3000": " ",
    "「": "\uff62",
    "」": "\uff63",
    "\u00a5": "\\",  # ¥
    "\uffe5": "\\",  # ￥
    "ー": "-",
    "\uff70": "-",  # ｰ
    "\u2010": "-",  # ‐
    "\u2212": "-",  # −
}


def _convert_char(char: str) -> str | None:
    """One input character as Zengin characters, or None when it has no conversion."""
    if char in ZENGIN_CHARACTERS:
        return char
    if char in _SPECIAL:
        return _SPECIAL[char]
    if "a" <= char <= "z":
        return char.upper()
    code = ord(char)
    if 0xFF01 <= code <= 0xFF5E:  # full-width ASCII
        ascii_char = unicodedata.normalize("NFKC", char)
        return _convert_char(ascii_char) if ascii_char != char else None
    if 0x3041 <= code <= 0x3096:  # hiragana -> katakana
        char = chr(code + 0x60)
    char = _SMALL_TO_LARGE.get(char, char)
    if char in ZENGIN_CHARACTERS:  # a half-width small kana made large
        return char
    if not 0x30A1 <= ord(char) <= 0x30FA:
        return None
    out = []
    for part in unicodedata.normalize("NFD", char):  # ガ -> カ + U+3099
        half = _FULL_TO_HALF.get(part) or _SPECIAL.get(part)
        if half is None or half not in ZENGIN_CHARACTERS:
            return None
        out.append(half)
    return "".join(out)


def to_zengin_kana(text: str, *, field: str = "text", max_length: int | None = None) -> str:
    """``text`` in the Zengin character set (see the module docstring for the rules).

    Raises ``ZenginCharsetError`` for the first character that has no conversion (``position``:
    its 0-based index in ``text``), and ``ZenginTooLong`` when the converted text is longer than
    ``max_length`` single-byte characters (``ﾊﾟ`` counts two). Never truncates.
    """
    out: list[str] = []
    for position, char in enumerate(text):
        converted = _convert_char(char)
        if converted is None:
            raise ZenginCharsetError(field, position, char)
        out.append(converted)
    result = "".join(out)
    if max_length is not None and len(result) > max_length:
        raise ZenginTooLong(
            field,
            max_length,
            result[max_length],
            f"{result!r} is {len(result)} characters in the Zengin set, longer than the "
            f"field's {max_length}",
        )
    return result


def is_zengin_text(text: str) -> bool:
    """Whether ``text`` is already in the Zengin set (half-width, nothing to convert)."""
    return all(char in ZENGIN_CHARACTERS for char in text)


# --- the layout -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a record. ``start`` is the 1-based byte position; ``kind`` ``N`` (digits,
    right-aligned, zero-padded) or ``C`` (text, left-aligned, space-padded); ``notes`` says what
    we write. ``fixed`` is the value every record carries (``""``: blank, all spaces), None when
    the value comes from the input."""

    name_ja: str
    name_en: str
    start: int
    length: int
    kind: Literal["N", "C"]
    notes: str
    fixed: str | None = None

    @property
    def end(self) -> int:
        """The field's last byte, 1-based and inclusive."""
        return self.start + self.length - 1


LAYOUT: dict[str, tuple[Field, ...]] = {
    "header": (
        Field("データ区分", "data_kind", 1, 1, "N", "1 (header)", "1"),
        Field("種別コード", "type_code", 2, 2, "N", "21 (総合振込)", "21"),
        Field("コード区分", "code_kind", 4, 1, "N", "0 (JIS; CP932 single-byte)", "0"),
        Field("依頼人コード", "remitter_code", 5, 10, "N", "the code the bank gave the city"),
        Field("依頼人名", "remitter_name", 15, 40, "C", "remitter's name, kana"),
        Field("振込指定日", "transfer_date", 55, 4, "N", "transfer date, MMDD"),
        Field("仕向銀行番号", "bank_code", 59, 4, "N", "remitter's bank code"),
        Field("仕向銀行名", "bank_name", 63, 15, "C", "remitter's bank name, kana, or blank"),
        Field("仕向支店番号", "branch_code", 78, 3, "N", "remitter's branch code"),
        Field("仕向支店名", "branch_name", 81, 15, "C", "remitter's branch name, kana, or blank"),
        Field("預金種目(依頼人)", "account_type", 96, 1, "N", "1 普通, 2 当座, 4 貯蓄, 9 その他"),
        Field("口座番号(依頼人)", "account_number", 97, 7, "N", "remitter's account number"),
        Field("ダミー", "dummy", 104, 17, "C", "spaces", ""),
    ),
    "data": (
        Field("データ区分", "data_kind", 1, 1, "N", "2 (data)", "2"),
        Field("被仕向銀行番号", "bank_code", 2, 4, "N", "payee's bank code"),
        Field("被仕向銀行名", "bank_name", 6, 15, "C", "payee's bank name, kana, or blank"),
        Field("被仕向支店番号", "branch_code", 21, 3, "N", "payee's branch code"),
        Field("被仕向支店名", "branch_name", 24, 15, "C", "payee's branch name, kana, or blank"),
        Field("手形交換所番号", "clearing_house", 39, 4, "N", "unused: spaces", ""),
        Field("預金種目", "account_type", 43, 1, "N", "1 普通, 2 当座, 4 貯蓄, 9 その他"),
        Field("口座番号", "account_number", 44, 7, "N", "payee's account number"),
        Field("受取人名", "payee_name", 51, 30, "C", "payee's account holder name, kana"),
        Field("振込金額", "amount", 81, 10, "N", "amount in yen, 1 to 9,999,999,999"),
        Field("新規コード", "new_code", 91, 1, "N", "0 (その他)", "0"),
        Field("顧客コード1", "customer_code1", 92, 10, "C", "our reference, or blank"),
        Field("顧客コード2", "customer_code2", 102, 10, "C", "our reference, or blank"),
        Field("振込指定区分", "transfer_kind", 112, 1, "N", "7 (電信扱 / テレ振込)", "7"),
        Field("識別表示", "identifier", 113, 1, "C", "space", ""),
        Field("ダミー", "dummy", 114, 7, "C", "spaces", ""),
    ),
    "trailer": (
        Field("データ区分", "data_kind", 1, 1, "N", "8 (trailer)", "8"),
        Field("合計件数", "total_count", 2, 6, "N", "number of data records"),
        Field("合計金額", "total_amount", 8, 12, "N", "sum of the data records' amounts"),
        Field("ダミー", "dummy", 20, 101, "C", "spaces", ""),
    ),
    "end": (
        Field("データ区分", "data_kind", 1, 1, "N", "9 (end)", "9"),
        Field("ダミー", "dummy", 2, 119, "C", "spaces", ""),
    ),
}
"""The four record layouts of a 総合振込 file, field by field (each tiles bytes 1..120)."""

_DATA_KIND = {"header": "1", "data": "2", "trailer": "8", "end": "9"}


def layout_markdown(kind: str) -> str:
    """``LAYOUT[kind]`` as a Markdown table (the tables of ``docs/zengin.md``)."""
    lines = [
        "| field | 項目 | position | length | type | what we write |",
        "|---|---|---|---|---|---|",
    ]
    for f in LAYOUT[kind]:
        lines.append(
            f"| `{f.name_en}` | {f.name_ja} | {f.start}-{f.end} | {f.length} | {f.kind} "
            f"| {f.notes} |"
        )
    return "\n".join(lines)


def _check_layout() -> None:
    for kind, fields in LAYOUT.items():
        position = 1
        for f in fields:
            if f.start != position:
                raise AssertionError(f"{kind}.{f.name_en} starts at {f.start}, not {position}")
            position += f.length
        if position != RECORD_LENGTH + 1:
            raise AssertionError(f"{kind} is {position - 1} bytes, not {RECORD_LENGTH}")
        if fields[0].fixed != _DATA_KIND[kind]:
            raise AssertionError(f"{kind}'s データ区分 is not {_DATA_KIND[kind]}")


_check_layout()


# --- the generic fixed-width writer and reader ----------------------------------------------

_DIGITS = re.compile(r"[0-9]*")


def _write_record(kind: str, values: Mapping[str, str]) -> bytes:
    """One record from ``LAYOUT[kind]``: fixed fields from the table, the others from
    ``values`` (already validated: digits for N, Zengin text for C, none too long)."""
    parts: list[str] = []
    for f in LAYOUT[kind]:
        value = f.fixed if f.fixed is not None else values[f.name_en]
        if len(value) > f.length:
            raise ZenginFieldError(f"{kind}.{f.name_en}", f"{value!r} is longer than {f.length}")
        if f.kind == "N" and value != "":
            if not _DIGITS.fullmatch(value):
                raise ZenginFieldError(f"{kind}.{f.name_en}", f"{value!r} is not digits")
            parts.append(value.rjust(f.length, "0"))
        else:  # text, or a numeric field the table leaves blank
            if not is_zengin_text(value):
                raise ZenginFieldError(f"{kind}.{f.name_en}", f"{value!r} is not Zengin text")
            parts.append(value.ljust(f.length, " "))
    record = "".join(parts).encode(ENCODING)
    if len(record) != RECORD_LENGTH:  # pragma: no cover - the table and the checks forbid it
        raise AssertionError(f"{kind} record of {len(record)} bytes")
    return record + LINE_END


def _read_record(kind: str, record: bytes, number: int) -> dict[str, str]:
    """The fields of one 120-byte record, by ``name_en``: text fields without their trailing
    spaces, numeric fields as written (``""`` when blank); checks the digits and fixed values."""
    try:
        text = record.decode(ENCODING)
    except UnicodeDecodeError as error:
        raise ValueError(f"line {number} ({kind}): not CP932: {error}") from None
    if len(text) != RECORD_LENGTH:
        raise ValueError(f"line {number} ({kind}): not single-byte characters")
    fields: dict[str, str] = {}
    for f in LAYOUT[kind]:
        raw = text[f.start - 1 : f.end]
        if f.kind == "N":
            value = "" if raw == " " * f.length else raw
            if value and not (len(value) == f.length and _DIGITS.fullmatch(value)):
                raise ValueError(f"line {number} ({kind}): {f.name_en} {raw!r} is not digits")
        else:
            value = raw.rstrip(" ")
            if not is_zengin_text(value):
                raise ValueError(f"line {number} ({kind}): {f.name_en} {raw!r} is not Zengin text")
        if f.fixed is not None and value != f.fixed:
            raise ValueError(
                f"line {number} ({kind}): {f.name_en} is {raw!r}, expected {f.fixed!r}"
            )
        fields[f.name_en] = value
    return fields


# --- the transfer file ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Remitter:
    """The city as remitter (依頼人): settings of the app. Names may be hiragana or full-width;
    they are converted with ``to_zengin_kana``. Bank and branch names may be left blank."""

    code: str  # 依頼人コード: 10 digits, from the bank
    name_kana: str  # 依頼人名: up to 40 Zengin characters
    bank_code: str  # 4 digits
    branch_code: str  # 3 digits
    account_type: str  # "1" 普通, "2" 当座, "4" 貯蓄, "9" その他
    account_number: str  # up to 7 digits (zero-padded)
    bank_name_kana: str = ""  # up to 15
    branch_name_kana: str = ""  # up to 15


@dataclass(frozen=True, slots=True)
class TransferRecord:
    """One payee and amount (a data record)."""

    bank_code: str  # 4 digits
    branch_code: str  # 3 digits
    account_type: str  # "1", "2", "4" or "9"
    account_number: str  # up to 7 digits (zero-padded)
    holder_kana: str  # 受取人名: up to 30 Zengin characters, never truncated
    amount: int  # yen, 1 to 9,999,999,999
    customer_code1: str = ""  # up to 10 Zengin characters
    customer_code2: str = ""
    bank_name_kana: str = ""  # up to 15
    branch_name_kana: str = ""  # up to 15


def _digits(value: object, field: str, length: int, *, exact: bool = True) -> str:
    if not isinstance(value, str) or not _DIGITS.fullmatch(value) or not value:
        raise ZenginFieldError(field, f"{value!r} must be digits 0-9")
    if exact and len(value) != length:
        raise ZenginFieldError(field, f"{value!r} must be exactly {length} digits")
    if len(value) > length:
        raise ZenginFieldError(field, f"{value!r} is longer than {length} digits")
    return value


def _account_type(value: object, field: str) -> str:
    if value not in ACCOUNT_TYPES:
        raise ZenginFieldError(
            field, f"{value!r} must be one of 1, 2, 4, 9 (普通, 当座, 貯蓄, その他)"
        )
    return str(value)


def _text(value: object, field: str, length: int, *, required: bool = False) -> str:
    if not isinstance(value, str):
        raise ZenginFieldError(field, f"{value!r} is not text")
    text = to_zengin_kana(value, field=field, max_length=length)
    if required and not text.strip():
        raise ZenginFieldError(field, "must not be blank")
    return text


def _header_values(remitter: Remitter, transfer_date: datetime.date) -> dict[str, str]:
    if not isinstance(transfer_date, datetime.date):
        raise ZenginFieldError("transfer_date", f"{transfer_date!r} is not a date")
    return {
        "remitter_code": _digits(remitter.code, "remitter.code", 10),
        "remitter_name": _text(remitter.name_kana, "remitter.name_kana", 40, required=True),
        "transfer_date": transfer_date.strftime("%m%d"),
        "bank_code": _digits(remitter.bank_code, "remitter.bank_code", 4),
        "bank_name": _text(remitter.bank_name_kana, "remitter.bank_name_kana", 15),
        "branch_code": _digits(remitter.branch_code, "remitter.branch_code", 3),
        "branch_name": _text(remitter.branch_name_kana, "remitter.branch_name_kana", 15),
        "account_type": _account_type(remitter.account_type, "remitter.account_type"),
        "account_number": _digits(
            remitter.account_number, "remitter.account_number", 7, exact=False
        ),
    }


def _data_values(record: TransferRecord, index: int) -> dict[str, str]:
    name = f"records[{index}]"
    amount = record.amount
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise ZenginFieldError(f"{name}.amount", f"{amount!r} is not an integer number of yen")
    if not 1 <= amount <= MAX_AMOUNT:
        raise ZenginFieldError(f"{name}.amount", f"{amount} is not between 1 and {MAX_AMOUNT:,}")
    return {
        "bank_code": _digits(record.bank_code, f"{name}.bank_code", 4),
        "bank_name": _text(record.bank_name_kana, f"{name}.bank_name_kana", 15),
        "branch_code": _digits(record.branch_code, f"{name}.branch_code", 3),
        "branch_name": _text(record.branch_name_kana, f"{name}.branch_name_kana", 15),
        "account_type": _account_type(record.account_type, f"{name}.account_type"),
        "account_number": _digits(record.account_number, f"{name}.account_number", 7, exact=False),
        "payee_name": _text(record.holder_kana, f"{name}.holder_kana", 30, required=True),
        "amount": str(amount),
        "customer_code1": _text(record.customer_code1, f"{name}.customer_code1", 10),
        "customer_code2": _text(record.customer_code2, f"{name}.customer_code2", 10),
    }


def transfer_file(
    remitter: Remitter, transfer_date: datetime.date, records: Sequence[TransferRecord]
) -> bytes:
    """The whole 総合振込 file: CP932 bytes, every record 120 bytes and CR LF.

    Validates every field first and raises ``ZenginFieldError`` (a ``ValueError``) naming it
    (``remitter.bank_code``, ``records[1].amount``: 0-based), ``ZenginCharsetError`` for a
    character outside the set and ``ZenginTooLong`` for a name longer than its field (names are
    never truncated). At least one record, at most 999,999, and a total within 12 digits.
    """
    if not records:
        raise ZenginFieldError("records", "a transfer file needs at least one record")
    if len(records) > MAX_COUNT:
        raise ZenginFieldError("records", f"{len(records):,} records; at most {MAX_COUNT:,}")
    header = _header_values(remitter, transfer_date)
    data = [_data_values(record, index) for index, record in enumerate(records)]
    total = sum(record.amount for record in records)
    if total > MAX_TOTAL:
        raise ZenginFieldError("records", f"the total {total:,} does not fit 12 digits")
    trailer = {"total_count": str(len(records)), "total_amount": str(total)}
    out = [_write_record("header", header)]
    out.extend(_write_record("data", values) for values in data)
    out.append(_write_record("trailer", trailer))
    out.append(_write_record("end", {}))
    return b"".join(out)


def parse_transfer_file(
    data: bytes,
) -> tuple[dict[str, str], list[dict[str, str]], dict[str, str]]:
    """The header, data records and trailer of a 総合振込 file, each a dict by ``name_en`` of
    ``LAYOUT`` (text fields without trailing spaces; numeric fields as written, ``""`` blank).

    Checks: every line 120 bytes and CR LF, single-byte CP932; the order header, one or more
    data records, trailer, end; the type code 21 and the fixed fields; digits in numeric
    fields; the trailer's count and total against the data records. Raises ``ValueError``.
    """
    line = RECORD_LENGTH + len(LINE_END)
    if not data or len(data) % line:
        raise ValueError(
            f"the file is {len(data)} bytes, not a multiple of {line} (120 bytes and CR LF)"
        )
    lines = [data[i : i + line] for i in range(0, len(data), line)]
    for number, chunk in enumerate(lines, start=1):
        body = chunk[:RECORD_LENGTH]
        if chunk[RECORD_LENGTH:] != LINE_END or b"\r" in body or b"\n" in body:
            raise ValueError(f"line {number}: not 120 bytes followed by CR LF")
    kinds = "".join(chr(chunk[0]) for chunk in lines)
    if not re.fullmatch(r"12+89", kinds):
        raise ValueError(
            f"records in the order {kinds!r}: expected 1 (header), 2... (data), 8 (trailer), "
            "9 (end)"
        )
    header = _read_record("header", lines[0][:RECORD_LENGTH], 1)
    records = [
        _read_record("data", chunk[:RECORD_LENGTH], number)
        for number, chunk in enumerate(lines[1:-2], start=2)
    ]
    trailer = _read_record("trailer", lines[-2][:RECORD_LENGTH], len(lines) - 1)
    _read_record("end", lines[-1][:RECORD_LENGTH], len(lines))
    for number, record in enumerate(records, start=2):
        if not record["amount"]:
            raise ValueError(f"line {number} (data): the amount is blank")
    count = int(trailer["total_count"] or "0")
    total = int(trailer["total_amount"] or "0")
    if count != len(records):
        raise ValueError(f"the trailer counts {count} records, the file has {len(records)}")
    actual = sum(int(record["amount"]) for record in records)
    if total != actual:
        raise ValueError(f"the trailer's total is {total}, the records add up to {actual}")
    return header, records, trailer
