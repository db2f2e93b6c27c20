"""Settings, read from the environment (prefix ``POINTS_``) and an optional ``.env`` file.

``POINTS_DATABASE_URL``: where the data lives. Default: ``sqlite:///points.db``, a file in the
working directory. PostgreSQL: ``postgresql://user@host:5432/dbname`` (psycopg 3 is used).
``POINTS_SQLITE_SYNCHRONOUS``: SQLite's ``synchronous`` pragma; ``FULL`` (the default) loses no
committed entry on power loss.
``POINTS_ENVIRONMENT``: ``development`` (default) or ``production``. In production the settings
refuse to load without a real ``POINTS_SECRET_KEY`` (at least 32 characters, not the default).
``POINTS_KEY_DIR``: the directory of the QR signing keys (``points.keys``). Default: ``keys``
in the working directory (next to the default SQLite file).
``POINTS_EVENT_STREAM_SECONDS``: how long a shop's payment event stream lasts before the client
resumes it (1 to 55; 55 by default).
``POINTS_PUBLIC_URL``: the public origin printed in every QR code, scheme and host only (an
optional port), at most 40 characters, e.g. ``https://pay.komae.example``. Default in
development: ``http://127.0.0.1:8000``; required in production, and ``https`` there.
``POINTS_CITY_NAME`` and ``POINTS_CITY_NAME_EN``: the city's name in Japanese and in English,
printed on residents' cards and on the page a card's QR opens (``redemption.card_print``).
Default: ``狛江市`` / ``Komae City``, the city this engine was first written for (the demo
seeds it, and the examples' origin is ``pay.komae.example``); another city sets both.
``POINTS_ZENGIN_REMITTER_CODE``, ``POINTS_ZENGIN_REMITTER_NAME`` (half-width kana),
``POINTS_ZENGIN_BANK_CODE``, ``POINTS_ZENGIN_BANK_NAME``, ``POINTS_ZENGIN_BRANCH_CODE``,
``POINTS_ZENGIN_BRANCH_NAME``, ``POINTS_ZENGIN_ACCOUNT_TYPE`` and
``POINTS_ZENGIN_ACCOUNT_NUMBER``: the city's account that pays merchants, written in the header
of the Zengin transfer file (``redemption.payouts``). Unset in development: a demo remitter.
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET_KEY = "development-only-secret-key-never-use-in-production"  # noqa: S105
SECRET_KEY_MIN_LENGTH = 32
DEVELOPMENT_PUBLIC_URL = "http://127.0.0.1:8000"
PUBLIC_URL_MAX_LENGTH = 40
#: Scheme and host (letters, digits, dots and hyphens: what QR alphanumeric mode holds once
#: uppercased) and an optional port; nothing else.
PUBLIC_URL = re.compile(r"https?://[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?")


#: The remitter of transfer files in development when none is set (not a real account).
DEMO_REMITTER = {
    "code": "1234567890",
    "name_kana": "ｺﾏｴｼ ｶｲｹｲｶﾝﾘｼﾔ",
    "bank_code": "0001",
    "branch_code": "001",
    "account_type": "1",
    "account_number": "1234567",
    "bank_name_kana": "",
    "branch_name_kana": "",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="POINTS_", env_file=".env", extra="ignore")

    environment: Literal["development", "production"] = "development"
    #: The level of the JSON log lines (``points serve --log-level`` sets it for its workers).
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    database_url: str = "sqlite:///points.db"
    sqlite_synchronous: Literal["OFF", "NORMAL", "FULL", "EXTRA"] = "FULL"
    #: Keys the hashes of short secrets (enrolment codes) so a stolen database cannot be
    #: searched for them offline.
    secret_key: str = DEVELOPMENT_SECRET_KEY
    #: Seconds after which ``points verify`` reports an entry that is still not sealed.
    unsealed_grace_seconds: int = Field(default=10, ge=0, le=86_400)
    #: Request bodies larger than this are refused with 413.
    max_body_bytes: int = Field(default=65_536, ge=1024, le=10_485_760)
    #: Uploaded files (bulk award CSVs) may be up to this large.
    max_upload_bytes: int = Field(default=33_554_432, ge=1024, le=268_435_456)
    #: How long a claimed idempotency key is held before another request may take it over.
    idempotency_lease_seconds: int = Field(default=30, ge=1, le=600)
    #: How long idempotency records are kept (the purge job deletes older ones).
    idempotency_retention_hours: int = Field(default=24, ge=1, le=24 * 30)
    #: Rate limits (per window; see api.safety.RATE_LIMITS for the windows).
    rate_limit_self_enrolments_per_address: int = Field(default=30, ge=1)
    rate_limit_code_attempts_per_address: int = Field(default=10, ge=1)
    rate_limit_codes_per_counter: int = Field(default=60, ge=1)
    #: Run the scheduled jobs inside ``points serve`` (one process of a deployment should).
    jobs_enabled: bool = True
    #: Jobs not to run (``expiry``, ``hold_timeouts``, ``seal``, ``purge``).
    jobs_disabled: list[str] = Field(default_factory=list)
    #: Trigger overrides per job, e.g. {"expiry": {"trigger": "cron", "hour": 1, "minute": 0}}.
    job_schedules: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: A shop's payment event stream (server-sent events) ends after this many seconds, within
    #: a minute, and the client resumes it with Last-Event-ID: no request is endless.
    event_stream_seconds: int = Field(default=55, ge=1, le=55)
    #: The wallet warns of points expiring within this many days.
    expiry_notice_days: int = Field(default=60, ge=1, le=366)
    #: The wallet app's session (a cookie) lasts this many days since it was last used.
    wallet_session_days: int = Field(default=180, ge=1, le=400)
    #: A staff device's session (a till, a counter PC) lasts this many days since it was last
    #: used; the device is then enrolled again with a new code.
    device_session_days: int = Field(default=30, ge=1, le=400)
    #: Residents may start a wallet without visiting the counter (unverified until they do).
    self_enrolment: bool = True
    #: Origins allowed to call the API from a browser; none by default (CORS off).
    cors_origins: list[str] = Field(default_factory=list)
    #: The directory of the QR signing keys (``points.keys``; owner-only permissions).
    key_dir: Path = Path("keys")
    #: The public origin printed in QR codes (``None``: the development default).
    public_url: str | None = None
    #: The city's name, printed on residents' cards (Japanese first, then English).
    city_name: str = Field(default="狛江市", min_length=1, max_length=40)
    city_name_en: str = Field(default="Komae City", min_length=1, max_length=60)
    #: The remitter of the Zengin transfer file (the city's account the merchants are paid
    #: from): 依頼人コード (10 digits, given by the bank), name in half-width kana, bank and
    #: branch codes, account type (1 普通, 2 当座, 4 貯蓄, 9 その他) and number; bank and branch
    #: names are optional (blank is accepted by banks). Unset: no transfer file can be made
    #: (development: a demo remitter, see ``DEMO_REMITTER``).
    zengin_remitter_code: str | None = Field(default=None, pattern=r"^[0-9]{10}$")
    zengin_remitter_name: str | None = Field(default=None, min_length=1, max_length=40)
    zengin_bank_code: str | None = Field(default=None, pattern=r"^[0-9]{4}$")
    zengin_bank_name: str = Field(default="", max_length=15)
    zengin_branch_code: str | None = Field(default=None, pattern=r"^[0-9]{3}$")
    zengin_branch_name: str = Field(default="", max_length=15)
    zengin_account_type: Literal["1", "2", "4", "9"] = "1"
    zengin_account_number: str | None = Field(default=None, pattern=r"^[0-9]{1,7}$")

    @model_validator(mode="after")
    def _production_needs_a_secret(self) -> Settings:
        if self.environment == "production" and (
            self.secret_key == DEVELOPMENT_SECRET_KEY
            or len(self.secret_key) < SECRET_KEY_MIN_LENGTH
        ):
            raise ValueError(
                "POINTS_SECRET_KEY must be set to a random value of at least "
                f"{SECRET_KEY_MIN_LENGTH} characters in production"
            )
        return self

    @model_validator(mode="after")
    def _public_url_is_an_origin(self) -> Settings:
        if self.public_url is None:
            if self.environment == "production":
                raise ValueError(
                    "POINTS_PUBLIC_URL must be set in production: the public origin printed in "
                    "QR codes, e.g. https://pay.komae.example"
                )
            self.public_url = DEVELOPMENT_PUBLIC_URL
        url = self.public_url.lower().removesuffix("/")
        if not PUBLIC_URL.fullmatch(url) or len(url) > PUBLIC_URL_MAX_LENGTH:
            raise ValueError(
                f"POINTS_PUBLIC_URL must be a scheme and host only (http or https, an optional "
                f"port, no path), at most {PUBLIC_URL_MAX_LENGTH} characters, e.g. "
                f"https://pay.komae.example; got {self.public_url!r}"
            )
        if self.environment == "production" and not url.startswith("https://"):
            raise ValueError("POINTS_PUBLIC_URL must use https in production")
        self.public_url = url
        return self

    @property
    def zengin_remitter(self) -> dict[str, str] | None:
        """The remitter of transfer files as set (``None`` when a setting is missing); in
        development with none set, a demo remitter."""
        values = {
            "code": self.zengin_remitter_code,
            "name_kana": self.zengin_remitter_name,
            "bank_code": self.zengin_bank_code,
            "branch_code": self.zengin_branch_code,
            "account_number": self.zengin_account_number,
        }
        if all(value is None for value in values.values()) and self.environment != "production":
            return dict(DEMO_REMITTER)
        if any(value is None for value in values.values()):
            return None
        return {
            **{name: str(value) for name, value in values.items()},
            "account_type": self.zengin_account_type,
            "bank_name_kana": self.zengin_bank_name,
            "branch_name_kana": self.zengin_branch_name,
        }

    @property
    def public_origin(self) -> str:
        """The validated ``POINTS_PUBLIC_URL`` (lower case, no trailing slash)."""
        assert self.public_url is not None  # set by the validator
        return self.public_url

    @property
    def idempotency_lease(self) -> timedelta:
        return timedelta(seconds=self.idempotency_lease_seconds)

    @property
    def secret_key_bytes(self) -> bytes:
        return self.secret_key.encode("utf-8")
