"""The Zengin 総合振込 file (redemption.zengin): a golden file, the layout, the character set."""

from __future__ import annotations

import datetime
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from redemption.zengin import (
    LAYOUT,
    ZENGIN_CHARACTERS,
    Remitter,
    TransferRecord,
    ZenginCharsetError,
    ZenginFieldError,
    ZenginTooLong,
    is_zengin_text,
    layout_markdown,
    parse_transfer_file,
    to_zengin_kana,
    transfer_file,
)

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden" / "zengin_sogo_furikomi.txt"

REMITTER = Remitter(
    code="1234567890",
    name_kana="コマエシ　ポイントジムキョク",
    bank_code="0001",
    branch_code="001",
    account_type="1",
    account_number="1234567",
    bank_name_kana="ミズホ",
    # branch name left blank: banks accept blank names (they go by the codes)
)
TRANSFER_DATE = datetime.date(2025, 4, 25)
RECORDS = (
    TransferRecord(
        bank_code="0005",
        branch_code="123",
        account_type="1",
        account_number="7654321",
        holder_kana="キャップ　タロウ",  # small kana: ｷﾔﾂﾌﾟ
        amount=12_345,
        customer_code1="C0001",
        bank_name_kana="ミツビシＵＦＪ",
        branch_name_kana="シブヤ",
    ),
    TransferRecord(
        bank_code="0009",
        branch_code="456",
        account_type="2",
        account_number="123",  # zero-padded to 0000123
        holder_kana="がとう　じろう",  # hiragana with dakuten
        amount=1_000_000,
    ),
    TransferRecord(
        bank_code="9900",
        branch_code="019",
        account_type="1",
        account_number="1234567",
        holder_kana="カ）コマエショウテン",
        amount=9_999_999_999,
        customer_code2="abc123",
        bank_name_kana="ユウチョ",
        branch_name_kana="ゼロイチキュウ",
    ),
)


def _hand_built_lines() -> list[str]:
    """The golden file's records, written field by field from the layout tables of
    docs/zengin.md without the writer (the byte positions are in the comments)."""
    header = (
        "1"  # 1 データ区分
        + "21"  # 2-3 種別コード
        + "0"  # 4 コード区分
        + "1234567890"  # 5-14 依頼人コード
        + "ｺﾏｴｼ ﾎﾟｲﾝﾄｼﾞﾑｷﾖｸ".ljust(40)  # 15-54 依頼人名
        + "0425"  # 55-58 振込指定日
        + "0001"  # 59-62 仕向銀行番号
        + "ﾐｽﾞﾎ".ljust(15)  # 63-77 仕向銀行名
        + "001"  # 78-80 仕向支店番号
        + " " * 15  # 81-95 仕向支店名 (blank)
        + "1"  # 96 預金種目
        + "1234567"  # 97-103 口座番号
        + " " * 17  # 104-120 ダミー
    )
    data = [
        "2"  # 1 データ区分
        + bank  # 2-5 被仕向銀行番号
        + bank_name.ljust(15)  # 6-20 被仕向銀行名
        + branch  # 21-23 被仕向支店番号
        + branch_name.ljust(15)  # 24-38 被仕向支店名
        + "    "  # 39-42 手形交換所番号 (blank)
        + kind  # 43 預金種目
        + account  # 44-50 口座番号
        + name.ljust(30)  # 51-80 受取人名
        + amount  # 81-90 振込金額
        + "0"  # 91 新規コード
        + code1.ljust(10)  # 92-101 顧客コード1
        + code2.ljust(10)  # 102-111 顧客コード2
        + "7"  # 112 振込指定区分
        + " "  # 113 識別表示
        + " " * 7  # 114-120 ダミー
        for bank, bank_name, branch, branch_name, kind, account, name, amount, code1, code2 in (
            (
                "0005",
                "ﾐﾂﾋﾞｼUFJ",
                "123",
                "ｼﾌﾞﾔ",
                "1",
                "7654321",
                "ｷﾔﾂﾌﾟ ﾀﾛｳ",
                "0000012345",
                "C0001",
                "",
            ),
            ("0009", "", "456", "", "2", "0000123", "ｶﾞﾄｳ ｼﾞﾛｳ", "0001000000", "", ""),
            (
                "9900",
                "ﾕｳﾁﾖ",
                "019",
                "ｾﾞﾛｲﾁｷﾕｳ",
                "1",
                "1234567",
                "ｶ)ｺﾏｴｼﾖｳﾃﾝ",
                "9999999999",
                "",
                "ABC123",
            ),
        )
    ]
    trailer = (
        "8"  # 1 データ区分
        + "000003"  # 2-7 合計件数
        + "010001012344"  # 8-19 合計金額: 12,345 + 1,000,000 + 9,999,999,999
        + " " * 101  # 20-120 ダミー
    )
    end = "9" + " " * 119
    return [header, *data, trailer, end]


def test_golden_file_is_the_hand_built_records() -> None:
    lines = _hand_built_lines()
    assert all(len(line) == 120 for line in lines)
    expected = b"".join(line.encode("cp932") + b"\r\n" for line in lines)
    assert GOLDEN.read_bytes() == expected


def test_transfer_file_equals_the_golden_file_byte_for_byte() -> None:
    assert transfer_file(REMITTER, TRANSFER_DATE, RECORDS) == GOLDEN.read_bytes()


def test_every_line_is_120_bytes_and_crlf() -> None:
    data = transfer_file(REMITTER, TRANSFER_DATE, RECORDS)
    assert data.endswith(b"\r\n")
    lines = data.split(b"\r\n")[:-1]
    assert len(lines) == 1 + len(RECORDS) + 2
    assert all(len(line) == 120 for line in lines)
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert [line[:1] for line in lines] == [b"1", b"2", b"2", b"2", b"8", b"9"]
    assert max(data) < 0xE0  # single-byte CP932 only (no lead bytes 0x81-0x9F, 0xE0-0xFC)
    assert not any(0x81 <= byte <= 0x9F for byte in data)


def test_parse_reads_the_golden_file_by_field_name() -> None:
    header, records, trailer = parse_transfer_file(GOLDEN.read_bytes())
    assert header == {
        "data_kind": "1",
        "type_code": "21",
        "code_kind": "0",
        "remitter_code": "1234567890",
        "remitter_name": "ｺﾏｴｼ ﾎﾟｲﾝﾄｼﾞﾑｷﾖｸ",
        "transfer_date": "0425",
        "bank_code": "0001",
        "bank_name": "ﾐｽﾞﾎ",
        "branch_code": "001",
        "branch_name": "",
        "account_type": "1",
        "account_number": "1234567",
        "dummy": "",
    }
    assert records[0] == {
        "data_kind": "2",
        "bank_code": "0005",
        "bank_name": "ﾐﾂﾋﾞｼUFJ",
        "branch_code": "123",
        "branch_name": "ｼﾌﾞﾔ",
        "clearing_house": "",
        "account_type": "1",
        "account_number": "7654321",
        "payee_name": "ｷﾔﾂﾌﾟ ﾀﾛｳ",
        "amount": "0000012345",
        "new_code": "0",
        "customer_code1": "C0001",
        "customer_code2": "",
        "transfer_kind": "7",
        "identifier": "",
        "dummy": "",
    }
    assert [r["payee_name"] for r in records] == ["ｷﾔﾂﾌﾟ ﾀﾛｳ", "ｶﾞﾄｳ ｼﾞﾛｳ", "ｶ)ｺﾏｴｼﾖｳﾃﾝ"]
    assert records[1]["account_number"] == "0000123"
    assert records[2]["customer_code2"] == "ABC123"
    assert trailer == {
        "data_kind": "8",
        "total_count": "000003",
        "total_amount": "010001012344",
        "dummy": "",
    }


def test_trailer_count_and_total_equal_the_data() -> None:
    _, records, trailer = parse_transfer_file(transfer_file(REMITTER, TRANSFER_DATE, RECORDS))
    assert int(trailer["total_count"]) == len(records) == len(RECORDS)
    assert int(trailer["total_amount"]) == sum(int(r["amount"]) for r in records)
    assert int(trailer["total_amount"]) == sum(r.amount for r in RECORDS)


@pytest.mark.parametrize("kind", ["header", "data", "trailer", "end"])
def test_layout_fields_tile_bytes_1_to_120(kind: str) -> None:
    covered: list[int] = []
    for field in LAYOUT[kind]:
        assert field.kind in {"N", "C"}
        assert field.length > 0
        covered.extend(range(field.start, field.start + field.length))
    assert covered == list(range(1, 121))  # no gap, no overlap, in order
    assert LAYOUT[kind][0].name_en == "data_kind"
    assert LAYOUT[kind][0].fixed == {"header": "1", "data": "2", "trailer": "8", "end": "9"}[kind]
    names = [field.name_en for field in LAYOUT[kind]]
    assert len(names) == len(set(names))


def test_layout_is_the_standard_field_widths() -> None:
    widths = {kind: [f.length for f in fields] for kind, fields in LAYOUT.items()}
    assert widths == {
        "header": [1, 2, 1, 10, 40, 4, 4, 15, 3, 15, 1, 7, 17],
        "data": [1, 4, 15, 3, 15, 4, 1, 7, 30, 10, 1, 10, 10, 1, 1, 7],
        "trailer": [1, 6, 12, 101],
        "end": [1, 119],
    }


@pytest.mark.parametrize("kind", ["header", "data", "trailer", "end"])
def test_docs_carry_the_layout_tables(kind: str) -> None:
    docs = (ROOT / "docs" / "zengin.md").read_text(encoding="utf-8")
    assert layout_markdown(kind) in docs


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("カブシキガイシャ", "ｶﾌﾞｼｷｶﾞｲｼﾔ"),
        ("キャップ", "ｷﾔﾂﾌﾟ"),
        ("ｷｬｯﾌﾟ", "ｷﾔﾂﾌﾟ"),
        ("ＡＢＣ１２３", "ABC123"),
        ("abc", "ABC"),
        ("やまだ　たろう", "ﾔﾏﾀﾞ ﾀﾛｳ"),
        ("ァィゥェォッャュョヮヵヶ", "ｱｲｳｴｵﾂﾔﾕﾖﾜｶｹ"),
        ("ぁぃぅぇぉっゃゅょゎゕゖ", "ｱｲｳｴｵﾂﾔﾕﾖﾜｶｹ"),
        ("ヴァイオリン", "ｳﾞｱｲｵﾘﾝ"),
        ("パピプペポ", "ﾊﾟﾋﾟﾌﾟﾍﾟﾎﾟ"),
        ("スーパー", "ｽ-ﾊﾟ-"),
        ("ｽｰﾊﾟｰ", "ｽ-ﾊﾟ-"),
        ("カ）ヤマダ（ユ", "ｶ)ﾔﾏﾀﾞ(ﾕ"),
        ("「ＡＢ」．－／，￥¥＼", "｢AB｣.-/,\\\\\\"),
        ("カ\u3099", "ｶﾞ"),  # decomposed (combining) voiced mark
        ("", ""),
        ("ｱｲｳ (ABC) 123", "ｱｲｳ (ABC) 123"),
    ],
)
def test_to_zengin_kana(text: str, expected: str) -> None:
    assert to_zengin_kana(text) == expected
    assert is_zengin_text(expected)


@pytest.mark.parametrize(
    ("text", "position", "char"),
    [
        ("株", 0, "株"),
        ("ﾔﾏﾀﾞ株式会社", 4, "株"),
        ("カブ😀", 2, "😀"),
        ("A@B", 1, "@"),
        ("ヤマダ・タロウ", 3, "・"),
        ("ヲ", 0, "ヲ"),
        ("を", 0, "を"),
        ("ｦ", 0, "ｦ"),
        ("ヰ", 0, "ヰ"),
        ("A\tB", 1, "\t"),
        ("ＡＢ＠", 2, "＠"),
    ],
)
def test_to_zengin_kana_refuses_with_the_position(text: str, position: int, char: str) -> None:
    with pytest.raises(ZenginCharsetError) as caught:
        to_zengin_kana(text, field="holder")
    assert caught.value.field == "holder"
    assert caught.value.position == position
    assert caught.value.char == char
    assert not isinstance(caught.value, ZenginTooLong)
    assert isinstance(caught.value, ValueError)
    assert "holder" in str(caught.value)


def test_max_length_counts_single_byte_characters() -> None:
    assert to_zengin_kana("パ", max_length=2) == "ﾊﾟ"
    with pytest.raises(ZenginTooLong) as caught:
        to_zengin_kana("パ", field="name", max_length=1)
    assert caught.value.position == 1
    assert caught.value.char == "ﾟ"
    assert caught.value.field == "name"
    assert isinstance(caught.value, ZenginCharsetError)


def test_is_zengin_text() -> None:
    assert is_zengin_text("ｶﾞﾄｳ ｼﾞﾛｳ (ABC) 123./-,｢｣\\")
    assert is_zengin_text("")
    assert not is_zengin_text("ガトウ")
    assert not is_zengin_text("abc")
    assert not is_zengin_text("ｷｬｯﾌﾟ")
    assert not is_zengin_text("ｰ")
    assert not is_zengin_text("ｦ")
    assert all(len(char.encode("cp932")) == 1 for char in ZENGIN_CHARACTERS)


ZENGIN_TEXT = st.text(st.sampled_from(sorted(ZENGIN_CHARACTERS)), max_size=40)


@given(ZENGIN_TEXT)
def test_zengin_text_converts_to_itself(text: str) -> None:
    assert is_zengin_text(text)
    assert to_zengin_kana(text) == text


@given(st.text(st.sampled_from("あがぱゃっアガパャッーｱｧｰａＡa1１　（）「」・株@"), max_size=20))
def test_conversion_is_idempotent_or_refuses(text: str) -> None:
    try:
        converted = to_zengin_kana(text)
    except ZenginCharsetError as error:
        assert text[error.position] == error.char
        assert error.char in "・株@"
    else:
        assert is_zengin_text(converted)
        assert to_zengin_kana(converted) == converted


def _names(max_size: int, *, min_size: int = 0) -> st.SearchStrategy[str]:
    return st.text(
        st.sampled_from(sorted(ZENGIN_CHARACTERS)), min_size=min_size, max_size=max_size
    ).filter(lambda name: name.strip() != "" or min_size == 0)


RECORD = st.builds(
    TransferRecord,
    bank_code=st.from_regex(r"[0-9]{4}", fullmatch=True),
    branch_code=st.from_regex(r"[0-9]{3}", fullmatch=True),
    account_type=st.sampled_from(["1", "2", "4", "9"]),
    account_number=st.from_regex(r"[0-9]{1,7}", fullmatch=True),
    holder_kana=_names(30, min_size=1),
    amount=st.integers(1, 9_999_999_999),
    customer_code1=_names(10),
    customer_code2=_names(10),
    bank_name_kana=_names(15),
    branch_name_kana=_names(15),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(RECORD, min_size=1, max_size=20), st.dates())
def test_any_valid_file_parses_back(records: list[TransferRecord], day: datetime.date) -> None:
    data = transfer_file(REMITTER, day, records)
    header, parsed, trailer = parse_transfer_file(data)
    assert header["transfer_date"] == day.strftime("%m%d")
    assert [int(r["amount"]) for r in parsed] == [r.amount for r in records]
    assert [r["payee_name"] for r in parsed] == [r.holder_kana.rstrip(" ") for r in records]
    assert [r["account_number"] for r in parsed] == [r.account_number.zfill(7) for r in records]
    assert int(trailer["total_count"]) == len(records)
    assert int(trailer["total_amount"]) == sum(r.amount for r in records)


def _record(**changes: object) -> TransferRecord:
    values: dict[str, object] = {
        "bank_code": "0005",
        "branch_code": "123",
        "account_type": "1",
        "account_number": "7654321",
        "holder_kana": "ﾀﾛｳ",
        "amount": 1000,
    }
    values.update(changes)
    return TransferRecord(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"amount": 0}, "records[1].amount"),
        ({"amount": -5}, "records[1].amount"),
        ({"amount": 10_000_000_000}, "records[1].amount"),  # 11 digits
        ({"amount": True}, "records[1].amount"),
        ({"amount": 100.0}, "records[1].amount"),
        ({"bank_code": "00A5"}, "records[1].bank_code"),
        ({"bank_code": "005"}, "records[1].bank_code"),
        ({"bank_code": "０００５"}, "records[1].bank_code"),
        ({"branch_code": "1234"}, "records[1].branch_code"),
        ({"account_type": "3"}, "records[1].account_type"),
        ({"account_number": "12345678"}, "records[1].account_number"),
        ({"account_number": ""}, "records[1].account_number"),
        ({"holder_kana": "ア" * 31}, "records[1].holder_kana"),
        ({"holder_kana": "パ" * 16}, "records[1].holder_kana"),  # 32 single-byte characters
        ({"holder_kana": "山田"}, "records[1].holder_kana"),
        ({"holder_kana": "　"}, "records[1].holder_kana"),
        ({"bank_name_kana": "ア" * 16}, "records[1].bank_name_kana"),
        ({"branch_name_kana": "ア" * 16}, "records[1].branch_name_kana"),
        ({"customer_code1": "A" * 11}, "records[1].customer_code1"),
    ],
)
def test_bad_records_are_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    with pytest.raises(ValueError, match=re.escape(field)) as caught:
        transfer_file(REMITTER, TRANSFER_DATE, [_record(), _record(**changes)])
    assert isinstance(caught.value, ZenginFieldError)
    assert caught.value.field == field


def test_a_payee_name_too_long_is_never_truncated() -> None:
    with pytest.raises(ZenginTooLong) as caught:
        transfer_file(REMITTER, TRANSFER_DATE, [_record(holder_kana="ｱ" * 30 + "ｲ")])
    assert caught.value.field == "records[0].holder_kana"
    assert caught.value.position == 30
    assert caught.value.char == "ｲ"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"code": "123456789"}, "remitter.code"),
        ({"code": "12345678901"}, "remitter.code"),
        ({"name_kana": "小江市"}, "remitter.name_kana"),
        ({"name_kana": ""}, "remitter.name_kana"),
        ({"name_kana": "ア" * 41}, "remitter.name_kana"),
        ({"bank_code": "1"}, "remitter.bank_code"),
        ({"branch_code": "x01"}, "remitter.branch_code"),
        ({"account_type": "0"}, "remitter.account_type"),
        ({"account_number": "1234-67"}, "remitter.account_number"),
        ({"bank_name_kana": "ミズホギンコウホンテンエイギョウブ"}, "remitter.bank_name_kana"),
    ],
)
def test_a_bad_remitter_is_refused_naming_the_field(changes: dict[str, object], field: str) -> None:
    values: dict[str, object] = {
        "code": REMITTER.code,
        "name_kana": REMITTER.name_kana,
        "bank_code": REMITTER.bank_code,
        "branch_code": REMITTER.branch_code,
        "account_type": REMITTER.account_type,
        "account_number": REMITTER.account_number,
    }
    values.update(changes)
    remitter = Remitter(**values)  # type: ignore[arg-type]
    with pytest.raises(ZenginFieldError, match=re.escape(field)) as caught:
        transfer_file(remitter, TRANSFER_DATE, [_record()])
    assert caught.value.field == field


def test_no_records_too_many_and_a_total_beyond_12_digits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one"):
        transfer_file(REMITTER, TRANSFER_DATE, [])
    with pytest.raises(ValueError, match="12 digits"):
        transfer_file(REMITTER, TRANSFER_DATE, [_record(amount=9_999_999_999)] * 101)
    # 101 records of the largest amount: 1,009,999,999,899; 100 of them still fit
    transfer_file(REMITTER, TRANSFER_DATE, [_record(amount=9_999_999_999)] * 100)


def _golden_lines() -> list[bytes]:
    return GOLDEN.read_bytes().split(b"\r\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


def test_parse_refuses_a_broken_file() -> None:
    lines = _golden_lines()
    good = _join(lines)
    with pytest.raises(ValueError, match="multiple of 122"):
        parse_transfer_file(good[:-1])
    with pytest.raises(ValueError, match="multiple of 122"):
        parse_transfer_file(b"")
    with pytest.raises(ValueError, match="CR LF"):
        parse_transfer_file(good.replace(b"\r\n", b" \n"))
    with pytest.raises(ValueError, match="order"):  # no trailer
        parse_transfer_file(_join(lines[:4] + lines[5:]))
    with pytest.raises(ValueError, match="order"):  # no data records
        parse_transfer_file(_join([lines[0], lines[4], lines[5]]))
    with pytest.raises(ValueError, match="order"):  # data after the trailer
        parse_transfer_file(_join([lines[0], lines[1], lines[4], lines[2], lines[5]]))
    with pytest.raises(ValueError, match="counts 3 records"):
        parse_transfer_file(_join(lines[:3] + lines[4:]))
    wrong_total = lines[4][:7] + b"010001012345" + lines[4][19:]  # bytes 8-19
    with pytest.raises(ValueError, match="total"):
        parse_transfer_file(_join([*lines[:4], wrong_total, lines[5]]))
    letters_in_amount = lines[1][:80] + b"00000123A5" + lines[1][90:]
    with pytest.raises(ValueError, match="amount"):
        parse_transfer_file(_join([lines[0], letters_in_amount, *lines[2:]]))
    not_furikomi = lines[0][:1] + b"11" + lines[0][3:]
    with pytest.raises(ValueError, match="type_code"):
        parse_transfer_file(_join([not_furikomi, *lines[1:]]))
