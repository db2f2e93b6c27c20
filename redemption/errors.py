"""The refusals of the spending side: shops, tills, payments and refunds.

They extend the tree drawn in ``points.errors`` (each code is stable; ``api.errors`` decides
every HTTP status, by the base class)::

    Conflict
    ├── MerchantNotActive       the shop is suspended or closed (merchant_not_active)
    ├── PaymentRequestPaid      a payment QR that was paid already (payment_request_paid)
    ├── PaymentRequestCancelled a payment QR the shop cancelled (payment_request_cancelled)
    ├── PayCodeUsed             a pay code that paid already (pay_code_used)
    ├── PaymentNotPending       confirm or decline of a payment that is not awaiting it
    ├── PaymentTimedOut         confirm after the confirmation time ran out (payment_timed_out)
    ├── RefundNotAllowed        a refund of a pending or voided payment (refund_not_allowed)
    ├── RefundExceedsPayment    more than is left to refund (refund_exceeds_payment, refundable)
    ├── RefundWindowOver        a refund after the shop's refund window (refund_window_over)
    ├── TillRevoked             a revoked till's store QR cannot be reissued (till_revoked)
    ├── CardBlocked             a blocked or replaced card, or its resident cannot pay
    │                           (moved out, deceased, blocked, erased) (card_blocked)
    ├── CardLocked              5 wrong PINs: staff unlock it (card_locked)
    ├── CardExists              the resident has an active card: block and reissue (card_exists)
    ├── CardMerchantLimitExceeded  the card's payments at this shop today (card_shop_limit_exceeded)
    ├── OutOfStock              a catalog item with too few left (out_of_stock, ``in_stock``)
    ├── ItemNotAvailable        a catalog item retired, or outside its window (item_not_available)
    ├── ExchangeLimitExceeded   beyond an item's limit per resident and fiscal year
    │                           (exchange_limit_exceeded, ``left``)
    ├── PeriodNotEnded          a settlement of a month not yet over (period_not_ended, cut_at)
    ├── PeriodSuperseded        a month older than one settled already (period_superseded)
    └── TransferFileMade        a run's transfer file is made already; a rejected transfer
                                goes into the next run's file (transfer_file_made)
    InvalidInput
    ├── PointTypeNotAccepted    a point type the shop does not take (point_type_not_accepted)
    ├── AmountMismatch          an amount other than the payment QR's (amount_mismatch)
    ├── PayCodeLimitExceeded    above the resident's pay-code limit (pay_code_limit_exceeded)
    ├── CardDailyLimitExceeded  above what the card may pay today (card_daily_limit_exceeded)
    ├── CardNumberInvalid       not 16 digits, or a failed check digit (card_number_invalid)
    ├── PinInvalid              not 4 to 6 digits, or too easy a new PIN (pin_invalid)
    ├── PinIncorrect            a wrong PIN, with ``attempts_left`` (pin_incorrect)
    ├── NotACounter             catalog items belong to a city counter (not_a_counter)
    ├── StockBelowZero          a stock adjustment below zero (stock_below_zero)
    ├── ImageInvalid            not a PNG, JPEG or WebP, or too large (image_invalid)
    └── BankDetailsInvalid      bank details the Zengin file cannot carry: codes not digits of
                                the right length, a name outside its character set
                                (bank_details_invalid, ``position``)
    Forbidden
    └── TillRequired            only a till (a shop's device) takes payments (till_required)
    Unavailable
    └── RemitterNotConfigured   the city's account for transfer files is not set
                                (remitter_not_configured: the POINTS_ZENGIN_* settings)
    RateLimited
    └── PinAttemptsExceeded     a till's 10 wrong PINs in an hour (pin_attempts_exceeded)
"""

from __future__ import annotations

from points.errors import Conflict, Forbidden, InvalidInput, RateLimited, Unavailable


class MerchantNotActive(Conflict):
    code = "merchant_not_active"


class PaymentRequestPaid(Conflict):
    code = "payment_request_paid"


class PaymentRequestCancelled(Conflict):
    code = "payment_request_cancelled"


class PayCodeUsed(Conflict):
    code = "pay_code_used"


class PaymentNotPending(Conflict):
    code = "payment_not_pending"


class PaymentTimedOut(Conflict):
    code = "payment_timed_out"


class RefundNotAllowed(Conflict):
    code = "refund_not_allowed"


class RefundExceedsPayment(Conflict):
    code = "refund_exceeds_payment"


class RefundWindowOver(Conflict):
    code = "refund_window_over"


class TillRevoked(Conflict):
    code = "till_revoked"


class PointTypeNotAccepted(InvalidInput):
    code = "point_type_not_accepted"


class AmountMismatch(InvalidInput):
    code = "amount_mismatch"


class PayCodeLimitExceeded(InvalidInput):
    code = "pay_code_limit_exceeded"


class TillRequired(Forbidden):
    code = "till_required"


class CardBlocked(Conflict):
    code = "card_blocked"


class CardLocked(Conflict):
    code = "card_locked"


class CardExists(Conflict):
    code = "card_exists"


class CardMerchantLimitExceeded(Conflict):
    code = "card_shop_limit_exceeded"


class CardDailyLimitExceeded(InvalidInput):
    code = "card_daily_limit_exceeded"


class CardNumberInvalid(InvalidInput):
    code = "card_number_invalid"


class PinInvalid(InvalidInput):
    code = "pin_invalid"


class PinIncorrect(InvalidInput):
    code = "pin_incorrect"


class PinAttemptsExceeded(RateLimited):
    code = "pin_attempts_exceeded"


class OutOfStock(Conflict):
    code = "out_of_stock"


class ItemNotAvailable(Conflict):
    code = "item_not_available"


class ExchangeLimitExceeded(Conflict):
    code = "exchange_limit_exceeded"


class NotACounter(InvalidInput):
    code = "not_a_counter"


class StockBelowZero(InvalidInput):
    code = "stock_below_zero"


class ImageInvalid(InvalidInput):
    code = "image_invalid"


class PeriodNotEnded(Conflict):
    code = "period_not_ended"


class PeriodSuperseded(Conflict):
    code = "period_superseded"


class TransferFileMade(Conflict):
    code = "transfer_file_made"


class BankDetailsInvalid(InvalidInput):
    code = "bank_details_invalid"


class RemitterNotConfigured(Unavailable):
    code = "remitter_not_configured"
