"""The synthetic shop's catalogue: products and categories named in fa, ar, zh and en, and the
search queries customers type.

Persian words joined by a zero-width non-joiner are written with ``\\u200c`` so that the invisible
character survives editors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from safar.demo.markets import USD_RATES


@dataclass(frozen=True, slots=True)
class Product:
    """One product. ``names`` maps a locale to the product's name in that language."""

    id: str
    category: str
    price_usd: float
    names: dict[str, str]


#: Category id → its name per locale.
CATEGORIES: Final[dict[str, dict[str, str]]] = {
    "Kitchen": {"en": "Kitchen", "fa": "آشپزخانه", "ar": "المطبخ", "zh": "厨房用品"},
    "Electronics": {
        "en": "Electronics",
        "fa": "کالای دیجیتال",
        "ar": "إلكترونيات",
        "zh": "数码电子",
    },
    "Home": {"en": "Home", "fa": "خانه و دکور", "ar": "المنزل والديكور", "zh": "家居"},
    "Beauty": {"en": "Beauty", "fa": "آرایشی و بهداشتی", "ar": "الجمال والعناية", "zh": "美妆个护"},
    "Fashion": {"en": "Fashion", "fa": "مد و پوشاک", "ar": "أزياء", "zh": "服饰箱包"},
    "Sports": {"en": "Sports", "fa": "ورزش و سفر", "ar": "رياضة", "zh": "运动户外"},
    "Books & Toys": {
        "en": "Books & Toys",
        "fa": "کتاب و اسباب\u200cبازی",
        "ar": "كتب وألعاب",
        "zh": "图书玩具",
    },
}

# (category, price in USD, en, fa, ar, zh)
_ROWS: Final = (
    ("Kitchen", 29.99, "Electric kettle", "کتری برقی", "غلاية كهربائية", "电热水壶"),
    ("Kitchen", 89.0, "Coffee maker", "قهوه\u200cساز", "ماكينة قهوة", "咖啡机"),
    ("Kitchen", 34.5, "Toaster", "توستر", "محمصة خبز", "烤面包机"),
    ("Kitchen", 49.99, "Blender", "مخلوط\u200cکن", "خلاط كهربائي", "搅拌机"),
    ("Kitchen", 59.0, "Rice cooker", "پلوپز", "طباخ أرز", "电饭煲"),
    ("Kitchen", 39.0, "Chef's knife", "چاقوی آشپزی", "سكين مطبخ", "厨师刀"),
    ("Kitchen", 32.0, "Non-stick frying pan", "ماهیتابه نچسب", "مقلاة غير لاصقة", "不粘锅"),
    ("Kitchen", 45.0, "Tea set", "سرویس چای\u200cخوری", "طقم شاي", "茶具套装"),
    ("Electronics", 79.0, "Wireless earbuds", "هدفون بی\u200cسیم", "سماعات لاسلكية", "无线耳机"),
    ("Electronics", 499.0, "Smartphone", "گوشی هوشمند", "هاتف ذكي", "智能手机"),
    ("Electronics", 899.0, "Laptop", "لپ\u200cتاپ", "حاسوب محمول", "笔记本电脑"),
    ("Electronics", 199.0, "Smart watch", "ساعت هوشمند", "ساعة ذكية", "智能手表"),
    ("Electronics", 25.0, "Power bank", "پاوربانک", "شاحن متنقل", "充电宝"),
    ("Electronics", 59.0, "Bluetooth speaker", "اسپیکر بلوتوثی", "مكبر صوت بلوتوث", "蓝牙音箱"),
    ("Electronics", 329.0, "Tablet", "تبلت", "جهاز لوحي", "平板电脑"),
    ("Electronics", 19.0, "USB-C charger", "شارژر USB-C", "شاحن USB-C", "USB-C充电器"),
    ("Home", 27.0, "Desk lamp", "چراغ مطالعه", "مصباح مكتب", "台灯"),
    ("Home", 65.0, "Wool blanket", "پتوی پشمی", "بطانية صوفية", "羊毛毯"),
    ("Home", 350.0, "Handmade rug", "فرش دستباف", "سجادة يدوية", "手工地毯"),
    ("Home", 15.0, "Scented candle", "شمع معطر", "شمعة معطرة", "香薰蜡烛"),
    ("Home", 22.0, "Wall clock", "ساعت دیواری", "ساعة حائط", "挂钟"),
    ("Home", 149.0, "Vacuum cleaner", "جاروبرقی", "مكنسة كهربائية", "吸尘器"),
    ("Home", 179.0, "Air purifier", "دستگاه تصفیه هوا", "منقي الهواء", "空气净化器"),
    ("Beauty", 24.0, "Face cream", "کرم صورت", "كريم للوجه", "面霜"),
    ("Beauty", 85.0, "Perfume", "عطر", "عطر", "香水"),
    ("Beauty", 39.0, "Hair dryer", "سشوار", "مجفف شعر", "吹风机"),
    ("Beauty", 18.0, "Sunscreen", "کرم ضدآفتاب", "واقي شمس", "防晒霜"),
    ("Fashion", 120.0, "Leather bag", "کیف چرمی", "حقيبة جلدية", "真皮手提包"),
    ("Fashion", 95.0, "Running shoes", "کفش دویدن", "حذاء جري", "跑步鞋"),
    ("Fashion", 55.0, "Silk scarf", "روسری ابریشمی", "وشاح حريري", "丝巾"),
    ("Fashion", 140.0, "Winter jacket", "کاپشن زمستانی", "سترة شتوية", "冬季夹克"),
    ("Fashion", 69.0, "Sunglasses", "عینک آفتابی", "نظارة شمسية", "太阳镜"),
    ("Sports", 28.0, "Yoga mat", "مت یوگا", "سجادة يوغا", "瑜伽垫"),
    ("Sports", 75.0, "Dumbbell set", "ست دمبل", "طقم دمبل", "哑铃套装"),
    ("Sports", 45.0, "Bicycle helmet", "کلاه دوچرخه\u200cسواری", "خوذة دراجة", "自行车头盔"),
    ("Sports", 12.0, "Water bottle", "قمقمه ورزشی", "زجاجة ماء رياضية", "运动水壶"),
    ("Books & Toys", 21.0, "Cookbook", "کتاب آشپزی", "كتاب طبخ", "菜谱"),
    ("Books & Toys", 34.0, "Board game", "بازی رومیزی", "لعبة لوحية", "桌游"),
    ("Books & Toys", 42.0, "Building blocks", "بلوک\u200cهای ساختنی", "مكعبات بناء", "积木"),
    (
        "Books & Toys",
        14.0,
        "Children's storybook",
        "کتاب داستان کودک",
        "كتاب قصص للأطفال",
        "儿童故事书",
    ),
)

PRODUCTS: Final[tuple[Product, ...]] = tuple(
    Product(
        id=f"P-{number:03d}",
        category=category,
        price_usd=price,
        names={"en": en, "fa": fa, "ar": ar, "zh": zh},
    )
    for number, (category, price, en, fa, ar, zh) in enumerate(_ROWS, start=1)
)

#: Indexes into :data:`PRODUCTS`, per category.
PRODUCTS_BY_CATEGORY: Final[dict[str, tuple[int, ...]]] = {
    category: tuple(i for i, p in enumerate(PRODUCTS) if p.category == category)
    for category in CATEGORIES
}

#: Searches that find nothing: the shopper who struggles with search is a scenario of its own.
_FRUITLESS: Final[dict[str, tuple[str, ...]]] = {
    "fa": ("هدیه تولد برای مادر", "کتری سوت\u200cدار قرمز", "ارسال رایگان", "کد تخفیف"),
    "ar": ("هدية عيد ميلاد لأمي", "غلاية حمراء بصفارة", "شحن مجاني", "كود خصم"),
    "zh": ("送妈妈的生日礼物", "红色鸣笛水壶", "包邮", "优惠码"),
    "en": ("birthday gift for mom", "red whistling kettle", "free shipping", "discount code"),
}


def _queries(locale: str) -> tuple[str, ...]:
    products = tuple(p.names[locale] for p in PRODUCTS)
    categories = tuple(names[locale] for names in CATEGORIES.values())
    return products + categories + _FRUITLESS[locale]


#: Search queries per locale: each product's name (by product index), then each category's name,
#: then the fruitless searches. :func:`search_results` gives the hits of each.
QUERIES: Final[dict[str, tuple[str, ...]]] = {locale: _queries(locale) for locale in _FRUITLESS}
CATEGORY_QUERY_BASE: Final = len(PRODUCTS)
FRUITLESS_QUERY_BASE: Final = len(PRODUCTS) + len(CATEGORIES)
FRUITLESS_QUERIES: Final = len(_FRUITLESS["en"])

_CATEGORY_SIZES: Final = tuple(len(ids) for ids in PRODUCTS_BY_CATEGORY.values())


def search_results(query: int) -> int:
    """How many products query number ``query`` finds."""
    if query < CATEGORY_QUERY_BASE:
        return 1 + query % 3  # the product and, for some, its accessories
    if query < FRUITLESS_QUERY_BASE:
        return _CATEGORY_SIZES[query - CATEGORY_QUERY_BASE]
    return 0


def prices(currency: str) -> tuple[float, ...]:
    """Every product's price in ``currency``, rounded the way a shop in that currency would."""
    rate = USD_RATES[currency]
    if currency == "IRR":
        # Rial amounts are large; shops round them to whole ten-thousands.
        return tuple(float(round(p.price_usd * rate, -4)) for p in PRODUCTS)
    if currency == "EGP":
        return tuple(float(round(p.price_usd * rate)) for p in PRODUCTS)
    return tuple(round(p.price_usd * rate, 2) for p in PRODUCTS)
