"""What the synthetic shop and its customers write: page titles, support tickets and newsletter
subjects, in fa, ar, zh and en.

Ticket texts are templates: ``{product}`` is the product's name in the customer's language,
``{order}`` the order id.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

#: Pages: (name as sent in ``page``/``screen`` calls, path, title per locale). The product page's
#: title is the product's name.
PAGES: Final[tuple[tuple[str, str, dict[str, str]], ...]] = (
    ("Home", "/", {"en": "Safar Shop", "fa": "فروشگاه سفر", "ar": "متجر سفر", "zh": "Safar 商城"}),
    ("Search", "/search", {"en": "Search", "fa": "جستجو", "ar": "بحث", "zh": "搜索"}),
    ("Product", "/products/", {}),
    ("Cart", "/cart", {"en": "Cart", "fa": "سبد خرید", "ar": "سلة التسوق", "zh": "购物车"}),
    (
        "Checkout",
        "/checkout",
        {"en": "Checkout", "fa": "تسویه حساب", "ar": "إتمام الشراء", "zh": "结算"},
    ),
    (
        "Order Confirmation",
        "/checkout/done",
        {"en": "Thank you!", "fa": "تأیید سفارش", "ar": "تأكيد الطلب", "zh": "订单确认"},
    ),
    (
        "Account",
        "/account",
        {"en": "My account", "fa": "حساب کاربری", "ar": "حسابي", "zh": "我的账户"},
    ),
    (
        "Help",
        "/help",
        {"en": "Help centre", "fa": "راهنما", "ar": "مركز المساعدة", "zh": "帮助中心"},
    ),
)
HOME, SEARCH, PRODUCT, CART, CHECKOUT, CONFIRMATION, ACCOUNT, HELP = range(len(PAGES))


@dataclass(frozen=True, slots=True)
class TicketTopic:
    """A kind of support request and how customers word it."""

    key: str
    priority: str
    #: Whether the request is about an order, and about one product of it.
    about_order: bool
    about_product: bool
    #: Whether it ends with the product sent back and refunded.
    leads_to_return: bool
    subject: dict[str, str]
    text: dict[str, str]


TICKET_TOPICS: Final[tuple[TicketTopic, ...]] = (
    TicketTopic(
        key="faulty_product",
        priority="high",
        about_order=True,
        about_product=True,
        leads_to_return=True,
        subject={
            "en": "My {product} is broken",
            "fa": "{product} خراب است",
            "ar": "{product} معطل",
            "zh": "{product}坏了",
        },
        text={
            "en": "My {product} stopped working after two days. Order {order}. Very disappointed.",
            "fa": "{product} من بعد از دو روز از کار افتاد. سفارش {order}. خیلی ناراحتم.",
            "ar": "توقف {product} عن العمل بعد يومين. الطلب {order}. أنا مستاء جداً.",
            "zh": "我的{product}用了两天就坏了。订单号 {order}。非常失望。",
        },
    ),
    TicketTopic(
        key="wrong_item",
        priority="high",
        about_order=True,
        about_product=True,
        leads_to_return=True,
        subject={
            "en": "Wrong item received",
            "fa": "کالای اشتباه ارسال شده",
            "ar": "استلمت منتجاً خاطئاً",
            "zh": "收到的商品不对",
        },
        text={
            "en": "I ordered {product} but received something else. Please help. Order {order}.",
            "fa": (
                "من {product} سفارش دادم اما کالای دیگری دریافت کردم. لطفاً کمک کنید. سفارش {order}."
            ),
            "ar": "طلبت {product} لكنني استلمت شيئاً آخر. أرجو المساعدة. الطلب {order}.",
            "zh": "我订的是{product}，但收到的是别的东西。请帮忙处理。订单号 {order}。",
        },
    ),
    TicketTopic(
        key="refund_request",
        priority="normal",
        about_order=True,
        about_product=True,
        leads_to_return=True,
        subject={
            "en": "Refund request",
            "fa": "درخواست بازگشت وجه",
            "ar": "طلب استرداد",
            "zh": "申请退款",
        },
        text={
            "en": "I would like to return the {product} and get my money back. Order {order}.",
            "fa": "می\u200cخواهم {product} را پس بدهم و پولم را پس بگیرم. سفارش {order}.",
            "ar": "أرغب في إرجاع {product} واسترداد أموالي. الطلب {order}.",
            "zh": "我想退回{product}并申请退款。订单号 {order}。",
        },
    ),
    TicketTopic(
        key="late_delivery",
        priority="normal",
        about_order=True,
        about_product=False,
        leads_to_return=False,
        subject={
            "en": "Where is my order?",
            "fa": "سفارشم کجاست؟",
            "ar": "أين طلبي؟",
            "zh": "我的订单在哪里？",
        },
        text={
            "en": "Order {order} was supposed to arrive three days ago and it still has not come.",
            "fa": "سفارش {order} باید سه روز پیش می\u200cرسید ولی هنوز نرسیده است.",
            "ar": "كان من المفترض أن يصل الطلب {order} قبل ثلاثة أيام ولم يصل بعد.",
            "zh": "订单 {order} 本应三天前送达，但至今还没有收到。",
        },
    ),
    TicketTopic(
        key="charged_twice",
        priority="urgent",
        about_order=True,
        about_product=False,
        leads_to_return=False,
        subject={
            "en": "Charged twice",
            "fa": "دو بار از حسابم کسر شد",
            "ar": "تم الخصم مرتين",
            "zh": "被重复扣款",
        },
        text={
            "en": "I was charged twice for order {order}. Please fix this as soon as you can.",
            "fa": (
                "برای سفارش {order} دو بار از کارتم پول کسر شده است. لطفاً هر چه زودتر رسیدگی کنید."
            ),
            "ar": "تم خصم المبلغ من بطاقتي مرتين للطلب {order}. يرجى حل المشكلة بأسرع وقت.",
            "zh": "订单 {order} 我的银行卡被扣了两次款，请尽快处理。",
        },
    ),
    TicketTopic(
        key="product_question",
        priority="low",
        about_order=False,
        about_product=True,
        leads_to_return=False,
        subject={
            "en": "Question about the {product}",
            "fa": "سؤال درباره {product}",
            "ar": "استفسار عن {product}",
            "zh": "关于{product}的问题",
        },
        text={
            "en": "Does the {product} come with a warranty? How long is it?",
            "fa": "آیا {product} گارانتی دارد؟ مدت آن چقدر است؟",
            "ar": "هل يأتي {product} مع ضمان؟ وما مدته؟",
            "zh": "{product}有保修吗？保修期多长？",
        },
    ),
    TicketTopic(
        key="cannot_log_in",
        priority="low",
        about_order=False,
        about_product=False,
        leads_to_return=False,
        subject={
            "en": "Cannot log in",
            "fa": "نمی\u200cتوانم وارد حسابم شوم",
            "ar": "لا أستطيع تسجيل الدخول",
            "zh": "无法登录",
        },
        text={
            "en": "I forgot my password and the reset e-mail never arrives.",
            "fa": "رمز عبورم را فراموش کرده\u200cام و ایمیل بازیابی هیچ\u200cوقت نمی\u200cرسد.",
            "ar": "نسيت كلمة المرور ورسالة إعادة التعيين لا تصل أبداً.",
            "zh": "我忘记了密码，重置邮件一直收不到。",
        },
    ),
)
#: Topic numbers by kind of ticket.
RETURN_TOPICS: Final = tuple(i for i, t in enumerate(TICKET_TOPICS) if t.leads_to_return)
ORDER_TOPICS: Final = tuple(
    i for i, t in enumerate(TICKET_TOPICS) if t.about_order and not t.leads_to_return
)
GENERAL_TOPICS: Final = tuple(i for i, t in enumerate(TICKET_TOPICS) if not t.about_order)

#: Why a product came back, by the topic of the ticket that asked for it; ``changed_mind`` when
#: the customer sent it back without a ticket.
RETURN_REASONS: Final = {"faulty_product": "defective", "wrong_item": "wrong_item"}
DEFAULT_RETURN_REASON: Final = "changed_mind"

TICKET_CHANNELS: Final = ("email", "chat", "phone", "web_form")

#: Newsletters, one a week in turn: (campaign id, link path, subject per locale).
CAMPAIGNS: Final[tuple[tuple[str, str, dict[str, str]], ...]] = (
    (
        "weekly_deals",
        "/deals",
        {
            "en": "This week's deals",
            "fa": "تخفیف\u200cهای این هفته",
            "ar": "عروض هذا الأسبوع",
            "zh": "本周特惠",
        },
    ),
    (
        "new_arrivals",
        "/new",
        {
            "en": "New arrivals for you",
            "fa": "محصولات تازه برای شما",
            "ar": "وصل حديثاً",
            "zh": "为你推荐的新品",
        },
    ),
    (
        "loyalty_rewards",
        "/account/rewards",
        {
            "en": "Your loyalty rewards",
            "fa": "امتیازهای باشگاه مشتریان شما",
            "ar": "مكافآت الولاء الخاصة بك",
            "zh": "您的会员积分奖励",
        },
    ),
    (
        "seasonal_sale",
        "/sale",
        {
            "en": "The seasonal sale is on",
            "fa": "حراج فصلی شروع شد",
            "ar": "بدأت التخفيضات الموسمية",
            "zh": "换季大促开始了",
        },
    ),
)
