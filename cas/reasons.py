"""Lock reasons: one table of every reason code, its on-screen code and its message (en/ru).

Used by the card applet (status words), the STB lock report, ``cas why`` and the field
diagnostics, so all of them speak the same words.  ``docs/field-guide.md`` prints this table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Why a channel is open or locked.  ``OPEN`` is the only non-lock value."""

    OPEN = "OPEN"
    NO_CARD = "NO_CARD"
    CARD_ERROR = "CARD_ERROR"
    PAIRING_MISMATCH = "PAIRING_MISMATCH"
    CARD_NOT_ACTIVE = "CARD_NOT_ACTIVE"
    CARD_SUSPENDED = "CARD_SUSPENDED"
    FINANCIAL_BLOCK = "FINANCIAL_BLOCK"
    CARD_KILLED = "CARD_KILLED"
    NOT_SUBSCRIBED = "NOT_SUBSCRIBED"
    CHANNEL_NOT_IN_PACKAGE = "CHANNEL_NOT_IN_PACKAGE"
    ENTITLEMENT_EXPIRED = "ENTITLEMENT_EXPIRED"
    NOT_YET_VALID = "NOT_YET_VALID"
    REGION_BLACKOUT = "REGION_BLACKOUT"
    MATURITY_LOCKED = "MATURITY_LOCKED"
    PIN_BLOCKED = "PIN_BLOCKED"
    NO_ECM = "NO_ECM"
    ECM_KEY_UNKNOWN = "ECM_KEY_UNKNOWN"
    UNKNOWN_CHANNEL = "UNKNOWN_CHANNEL"
    PPV_NOT_PURCHASED = "PPV_NOT_PURCHASED"
    PURSE_EMPTY = "PURSE_EMPTY"
    PPV_EVENT_ENDED = "PPV_EVENT_ENDED"
    PPV_NOT_ON_AIR = "PPV_NOT_ON_AIR"
    PPV_PIN_WRONG = "PPV_PIN_WRONG"
    SHARING_DETECTED = "SHARING_DETECTED"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReasonInfo:
    reason: Reason
    screen_code: str
    en: str
    ru: str
    fix_en: str
    fix_ru: str = ""


_TABLE: tuple[ReasonInfo, ...] = (
    ReasonInfo(reason=Reason.OPEN, screen_code="", en="Channel open", ru="Канал доступен",
               fix_en="nothing to do",
               fix_ru="ничего делать не нужно"),
    ReasonInfo(reason=Reason.NO_CARD, screen_code="E04", en="Insert your smart card",
               ru="Вставьте смарт-карту", fix_en="insert the smart card (chip facing down)",
               fix_ru="вставьте смарт-карту (чипом вниз)"),
    ReasonInfo(reason=Reason.CARD_ERROR, screen_code="E05", en="Smart card error",
               ru="Ошибка смарт-карты", fix_en="reinsert the card; replace it if the error stays",
               fix_ru="переустановите карту; если ошибка не исчезла, замените карту"),
    ReasonInfo(reason=Reason.PAIRING_MISMATCH, screen_code="E30",
               en="This card is paired with another receiver",
               ru="Карта привязана к другому приёмнику",
               fix_en="put the card back in its own box, or re-pair card and box at the head-end",
               fix_ru="вставьте карту в её приёмник или заново привяжите карту к приёмнику у оператора"),
    ReasonInfo(reason=Reason.CARD_NOT_ACTIVE, screen_code="E06", en="Smart card not activated",
               ru="Смарт-карта не активирована", fix_en="activate the card (register it to an account)",
               fix_ru="активируйте карту (привяжите её к лицевому счёту)"),
    ReasonInfo(reason=Reason.CARD_SUSPENDED, screen_code="E16",
               en="Service temporarily suspended", ru="Обслуживание временно приостановлено",
               fix_en="resume the service in the personal account",
               fix_ru="возобновите обслуживание в личном кабинете"),
    ReasonInfo(reason=Reason.FINANCIAL_BLOCK, screen_code="E17",
               en="Not enough money on the account: all channels locked",
               ru="Недостаточно средств на счёте: все каналы заблокированы",
               fix_en="top up the balance or take a promised payment",
               fix_ru="пополните баланс или возьмите обещанный платёж"),
    ReasonInfo(reason=Reason.CARD_KILLED, screen_code="E18", en="Smart card disabled",
               ru="Смарт-карта отключена", fix_en="contact the operator: the card is withdrawn",
               fix_ru="обратитесь к оператору: карта отозвана"),
    ReasonInfo(reason=Reason.NOT_SUBSCRIBED, screen_code="E16A",
               en="No package connected", ru="Пакет не подключён",
               fix_en="connect a package (subscribe)",
               fix_ru="подключите пакет"),
    ReasonInfo(reason=Reason.CHANNEL_NOT_IN_PACKAGE, screen_code="E16B",
               en="Channel not in your connected packages",
               ru="Канал не входит в подключённые пакеты",
               fix_en="subscribe to a package that carries this channel",
               fix_ru="подключите пакет, в который входит этот канал"),
    ReasonInfo(reason=Reason.ENTITLEMENT_EXPIRED, screen_code="E19",
               en="Subscription has expired", ru="Срок подписки истёк",
               fix_en="pay to extend the subscription",
               fix_ru="оплатите продление подписки"),
    ReasonInfo(reason=Reason.NOT_YET_VALID, screen_code="E20",
               en="Subscription not yet started", ru="Подписка ещё не началась",
               fix_en="wait until the subscription start date",
               fix_ru="дождитесь даты начала подписки"),
    ReasonInfo(reason=Reason.REGION_BLACKOUT, screen_code="E21",
               en="Not available in your region", ru="Недоступно в вашем регионе",
               fix_en="the service works only inside the country / licensed region",
               fix_ru="услуга работает только в стране / лицензионном регионе"),
    ReasonInfo(reason=Reason.MATURITY_LOCKED, screen_code="E22",
               en="Parental control: enter PIN", ru="Родительский контроль: введите PIN",
               fix_en="enter the parental PIN, or change the kids profile",
               fix_ru="введите PIN родительского контроля или отключите детский профиль"),
    ReasonInfo(reason=Reason.PIN_BLOCKED, screen_code="E23",
               en="PIN blocked after too many wrong attempts",
               ru="PIN заблокирован после неверных попыток",
               fix_en="ask the operator to reset the PIN",
               fix_ru="попросите оператора сбросить PIN"),
    ReasonInfo(reason=Reason.NO_ECM, screen_code="E100",
               en="No access information for this channel", ru="Нет данных доступа для канала",
               fix_en="check the head-end ECM generator / scrambler for this service",
               fix_ru="проверьте генератор ECM / скремблер головной станции для этого канала"),
    ReasonInfo(reason=Reason.ECM_KEY_UNKNOWN, screen_code="E101",
               en="Card needs a key update", ru="Карте нужно обновление ключей",
               fix_en="leave the box on the channel so key-update EMMs reach the card",
               fix_ru="оставьте приёмник включённым на канале, чтобы карта получила EMM с ключами"),
    ReasonInfo(reason=Reason.UNKNOWN_CHANNEL, screen_code="E102",
               en="Channel not found", ru="Канал не найден",
               fix_en="rescan channels",
               fix_ru="выполните поиск каналов"),
    ReasonInfo(reason=Reason.PPV_NOT_PURCHASED, screen_code="E40",
               en="Pay-per-view event not bought", ru="Событие с оплатой за просмотр не куплено",
               fix_en="buy the event with the purchase PIN (stb buy) or book it with the operator",
               fix_ru="купите событие с PIN-кодом покупки (stb buy) или закажите его у оператора"),
    ReasonInfo(reason=Reason.PURSE_EMPTY, screen_code="E41",
               en="Not enough credit on the card for this event",
               ru="Недостаточно кредита на карте для этого события",
               fix_en="let the box report its purchases, then ask the operator to top up the card",
               fix_ru="дайте приёмнику отправить отчёт о покупках и попросите оператора пополнить карту"),
    ReasonInfo(reason=Reason.PPV_EVENT_ENDED, screen_code="E42",
               en="The pay-per-view event has ended", ru="Событие с оплатой за просмотр закончилось",
               fix_en="nothing to fix: the event is over; buy the next one",
               fix_ru="исправлять нечего: событие закончилось; купите следующее"),
    ReasonInfo(reason=Reason.PPV_NOT_ON_AIR, screen_code="E43",
               en="This event is not on air now", ru="Это событие сейчас не в эфире",
               fix_en="buy the event while it is on air on its channel",
               fix_ru="покупайте событие, пока оно идёт в эфире на своём канале"),
    ReasonInfo(reason=Reason.PPV_PIN_WRONG, screen_code="E44",
               en="Wrong PIN: the event was not bought", ru="Неверный PIN: событие не куплено",
               fix_en="enter the purchase PIN (the parental PIN); after three wrong tries it "
                      "blocks (E23) until the operator resets it",
               fix_ru="введите PIN покупки (PIN родительского контроля); после трёх неверных "
                      "попыток он блокируется (E23) до сброса оператором"),
    ReasonInfo(reason=Reason.SHARING_DETECTED, screen_code="E60",
               en="Card used by more receivers than allowed",
               ru="Карта используется большим числом приёмников, чем разрешено",
               fix_en="use the card in your own receiver only; then ask the operator to clear "
                      "the card",
               fix_ru="используйте карту только в своём приёмнике, затем попросите оператора "
                      "снять блокировку карты"),
)

REASONS: dict[Reason, ReasonInfo] = {info.reason: info for info in _TABLE}


def info(reason: Reason) -> ReasonInfo:
    return REASONS[reason]


def message(reason: Reason, lang: str = "en") -> str:
    i = REASONS[reason]
    return i.ru if lang == "ru" else i.en


def fix(reason: Reason, lang: str = "en") -> str:
    """What to do about ``reason``, for the subscriber or the field engineer."""
    i = REASONS[reason]
    return (i.fix_ru or i.fix_en) if lang == "ru" else i.fix_en
