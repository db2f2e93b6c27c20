"""The demo city's fixed cast (``points.shell.city``): departments, programs, shops, the city
counter's catalog, staff, and the names residents are made of. Data only; the script that brings
them to life is ``points.shell.city``.

Names are plausible, not real: common Japanese family names, given names by generation, and
shops named after the neighbourhoods of Komae (和泉, 岩戸, 猪方, 駒井, 西河原, 野川).
"""

from __future__ import annotations

from dataclasses import dataclass

# Departments and their staff --------------------------------------------------------------------

#: (code, Japanese name, English name, the issuer's display name).
DEPARTMENTS = (
    ("health", "健康推進課", "Health Promotion", "健康推進課 保健係"),
    ("environment", "環境政策課", "Environment Policy", "環境政策課 環境係"),
    ("children", "子育て支援課", "Child-rearing Support", "子育て支援課 給付係"),
)

#: The members of staff who are not a shop's: (role, display name).
ADMIN_NAME = "情報政策課 システム管理者"
FINANCE_NAME = "会計課 出納係"
COUNTER_NAME = "市民課 窓口係"

# Point types ------------------------------------------------------------------------------------

#: The city's points: valid until the end of the month 12 months after the month earned.
PT = ("pt", "狛江ポイント", "Komae points", 12)
#: The short-lived campaign points: valid until the end of the month after the month earned
#: (30 to 61 days), so that the year's history shows them expiring.
ECO = ("eco", "こまエコポイント", "Komae eco campaign points", 1)


@dataclass(frozen=True, slots=True)
class ProgramSpec:
    key: str
    department: str
    point_type: str
    module: str
    name_ja: str
    name_en: str
    amount: int
    #: Allocated per fiscal year: this many points per resident of the city.
    budget_per_resident: int
    #: What the department does with the year's remainder at its end.
    year_end: str
    cap_per_month: int | None = None
    cap_per_fiscal_year: int | None = None
    checkup_types: tuple[str, ...] = ()
    budget_code: str | None = None


CHECKUP = ProgramSpec(
    "checkup",
    "health",
    "pt",
    "health_checkup",
    "健診受診ポイント",
    "Health checkup points",
    500,
    500,
    "carry_over",
    checkup_types=(
        "specific_health_checkup",
        "elderly_health_checkup",
        "cancer_screening",
        "dental_checkup",
    ),
    budget_code="04-01-02-19",
)
CLEAN_UP = ProgramSpec(
    "clean_up",
    "environment",
    "pt",
    "volunteering",
    "多摩川清掃ボランティア",
    "Tama River clean-up",
    300,
    100,
    "carry_over",
    cap_per_month=900,
    budget_code="04-02-01-19",
)
CHILDREN = ProgramSpec(
    "children",
    "children",
    "pt",
    "fixed_award",
    "子育て応援ポイント",
    "Child-rearing support points",
    500,
    1000,
    "lapse",
    budget_code="03-02-01-19",
)
ECO_CHALLENGE = ProgramSpec(
    "eco_challenge",
    "environment",
    "eco",
    "fixed_award",
    "こまエコ・チャレンジ",
    "Komae eco challenge",
    300,
    200,
    "lapse",
    budget_code="04-02-03-19",
)
PROGRAMS = (CHECKUP, CLEAN_UP, CHILDREN, ECO_CHALLENGE)

# Shops --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShopSpec:
    name_ja: str
    name_en: str
    category: str
    #: The account holder's name as the bank has it (katakana).
    holder_kana: str
    tills: int = 1
    #: Also takes the campaign points.
    eco: bool = False
    #: Store-QR payments up to this many points are posted at once (0: the till confirms each).
    auto_confirm_max: int = 0
    #: The cash-out fee in basis points (deducted at settlement).
    fee_bps: int = 0


SHOPS = (
    ShopSpec("狛江珈琲店", "Komae Coffee", "cafe", "コマエコーヒー"),
    ShopSpec("多摩川カフェ", "Tamagawa Cafe", "cafe", "タマガワカフェ"),
    ShopSpec("喫茶むさし", "Kissa Musashi", "cafe", "キッサムサシ", auto_confirm_max=1_000),
    ShopSpec("カフェ岩戸", "Cafe Iwado", "cafe", "カフェイワド"),
    ShopSpec("狛江マート", "Komae Mart", "grocery", "コマエマート", tills=2, eco=True, fee_bps=50),
    ShopSpec("和泉ストア", "Izumi Store", "grocery", "イズミストア", tills=2, eco=True),
    ShopSpec("岩戸八百屋", "Iwado Greengrocer", "grocery", "イワドヤオヤ", eco=True),
    ShopSpec("西河原精肉店", "Nishigawara Butcher", "grocery", "ニシガワラセイニクテン"),
    ShopSpec("猪方鮮魚店", "Inokata Fishmonger", "grocery", "イノカタセンギョテン"),
    ShopSpec("野川商店", "Nogawa Shoten", "grocery", "ノガワショウテン", eco=True),
    ShopSpec("パン工房こまえ", "Pan Kobo Komae", "bakery", "パンコウボウコマエ", eco=True),
    ShopSpec("ベーカリー岩戸", "Bakery Iwado", "bakery", "ベーカリーイワド", eco=True),
    ShopSpec("麦の穂ベーカリー", "Muginoho Bakery", "bakery", "ムギノホベーカリー"),
    ShopSpec("こまえ薬局", "Komae Pharmacy", "pharmacy", "コマエヤッキョク", tills=2, fee_bps=50),
    ShopSpec("和泉ドラッグ", "Izumi Drug", "pharmacy", "イズミドラッグ", tills=2),
    ShopSpec("岩戸調剤薬局", "Iwado Dispensing Pharmacy", "pharmacy", "イワドチョウザイヤッキョク"),
    ShopSpec("狛江書店", "Komae Books", "bookshop", "コマエショテン"),
    ShopSpec("古書いずみ", "Kosho Izumi", "bookshop", "コショイズミ"),
    ShopSpec("そば処 多摩川", "Soba Tamagawa", "restaurant", "ソバドコロタマガワ"),
    ShopSpec("中華 こまえ飯店", "Komae Hanten", "restaurant", "コマエハンテン"),
    ShopSpec("定食 岩戸亭", "Iwado-tei", "restaurant", "イワドテイ", auto_confirm_max=1_500),
    ShopSpec(
        "花のアトリエ狛江", "Atelier Fleur Komae", "florist", "ハナノアトリエコマエ", eco=True
    ),
    ShopSpec("狛江金物店", "Komae Hardware", "hardware", "コマエカナモノテン"),
    ShopSpec("サイクルショップ猪方", "Cycle Shop Inokata", "bicycle", "サイクルショップイノカタ"),
    ShopSpec("和菓子 亀屋", "Kameya Wagashi", "sweets", "カメヤ"),
    ShopSpec("洋菓子 ポム", "Patisserie Pomme", "sweets", "ヨウガシポム"),
    ShopSpec("豆腐の石井", "Ishii Tofu", "grocery", "イシイトウフテン", eco=True),
    ShopSpec("駒井米穀店", "Komai Rice", "grocery", "コマイベイコクテン", eco=True),
    ShopSpec("クリーニング白鳥", "Cleaning Shiratori", "laundry", "クリーニングシラトリ"),
    ShopSpec("西野川文具店", "Nishinogawa Stationery", "stationery", "ニシノガワブングテン"),
)

#: What a purchase costs by category: (lowest, highest) in yen, paid in points up to the balance.
PRICES = {
    "cafe": (380, 1_200),
    "grocery": (280, 3_200),
    "bakery": (220, 1_400),
    "pharmacy": (300, 3_000),
    "bookshop": (600, 2_600),
    "restaurant": (750, 1_600),
    "florist": (500, 3_000),
    "hardware": (300, 2_500),
    "bicycle": (500, 3_000),
    "sweets": (250, 1_800),
    "laundry": (400, 1_500),
    "stationery": (120, 1_200),
}
#: How often residents shop in each category (relative weights).
CATEGORY_WEIGHTS = {
    "grocery": 10,
    "cafe": 5,
    "bakery": 5,
    "pharmacy": 4,
    "restaurant": 3,
    "sweets": 2,
    "bookshop": 2,
    "laundry": 1,
    "florist": 1,
    "hardware": 1,
    "bicycle": 1,
    "stationery": 1,
}

# The city counter ---------------------------------------------------------------------------------

COUNTER_SHOP = ("狛江市役所 交換窓口", "City hall counter")
#: The counter's catalog: (Japanese name, English name, points, first stock, limit a resident a
#: fiscal year). The coaster starts sold out and is delivered in the first month.
CATALOG = (
    ("コーヒー麻袋のエコバッグ", "Eco bag sewn from a coffee sack", 500, 120, 2),
    ("狛江産はちみつ (小瓶)", "Komae honey (small jar)", 800, 60, 1),
    ("多摩川の間伐材コースター", "Coaster of Tama river thinned wood", 200, 0, None),
    ("狛江産野菜の詰め合わせ", "A box of Komae vegetables", 1_000, 40, 2),
)

# Residents ----------------------------------------------------------------------------------------


def _words(text: str) -> tuple[str, ...]:
    """Names written as text, one space between them (a hundred names read best that way)."""
    return tuple(text.split())


#: The first residents, named in the README and the sign-in lines: (address number, name, birth
#: year, how they take part).
FIRST_RESIDENTS = (
    ("1000000001", "狛江 花子", 1948, "phone"),
    ("1000000002", "和泉 太郎", 1941, "card"),
    ("1000000003", "岩戸 さくら", 2001, "phone"),
)

FAMILY_NAMES = _words(
    "佐藤 鈴木 高橋 田中 伊藤 渡辺 山本 中村 小林 加藤 吉田 山田 佐々木 山口 松本 井上 木村 林 "
    "斎藤 清水 山崎 森 池田 橋本 阿部 石川 山下 中島 石井 小川 前田 岡田 長谷川 藤田 後藤 近藤 "
    "村上 遠藤 青木 坂本 福田 太田 西村 藤井 金子 岡本 藤原 中野 三浦 原田 中川 松田 竹内 小野 "
    "田村 中山 和田 石田 森田 上田 原 内田 柴田 酒井 宮崎 横山 高木 安藤 宮本 大野 小島 谷口 "
    "工藤 高田 丸山 増田 杉山 村田 大塚 新井 小山 平野 藤本 河野 上野 野口 武田 松井 千葉 岩崎 "
    "菅原 木下 久保 佐野 野村 松尾 市川 菊地 杉本 古川 大西 島田 水野 桜井 高野 吉川 山内 西田 "
    "飯田 西川 小松 北村 安田 五十嵐 川口 平田 関 中田 服部 岩田 土屋 本田 樋口 秋山 永井"
)

#: Given names by generation (born before 1950, 1950 to 1974, 1975 to 1994, 1995 and after):
#: (women's, men's).
GIVEN_NAMES = {
    1930: (
        _words("和子 幸子 節子 洋子 恵子 京子 久子 悦子 弘子 美代子 静子 信子 文子 トシ子"),
        _words("茂 博 清 実 勇 進 明 正雄 和夫 昭 武 弘 三郎 義雄"),
    ),
    1950: (
        _words("由美子 裕子 真由美 直美 智子 久美子 恵美子 明美 順子 洋子 陽子 美智子"),
        _words("浩 誠 隆 修 健一 哲也 剛 聡 正 和彦 博之 伸一"),
    ),
    1975: (
        _words("愛 恵 彩 舞 麻衣 沙織 由佳 美穂 真理子 さやか 智美 陽子"),
        _words("大輔 拓也 健太 翔 和也 達也 直樹 亮 雄一 洋平 智也 剛史"),
    ),
    1995: (
        _words("美咲 陽菜 結衣 さくら 葵 七海 彩花 莉子 芽依 凛"),
        _words("翔太 大輝 蓮 悠斗 大翔 颯太 陸 湊 悠真 樹"),
    ),
}
