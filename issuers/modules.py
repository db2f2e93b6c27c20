"""Program modules: what kind of program a program is, and what one award of it means.

A module decides, for one qualifying event a department reports, *how much* is awarded and
*what may happen only once* — nothing else. Everything that moves value (budget, caps, wallets,
the ledger entry, idempotency) is done by ``issuers.awards`` the same way for every module, so a
new kind of program cannot get it wrong.

The interface, in one file per kind of program::

    class ProgramModule:
        kind: str                 # stored on the program ("health_checkup")
        title_ja, title_en: str   # shown to staff
        Config: type[BaseModel]   # the program's settings, checked when it is created
        Details: type[BaseModel]  # what the department sends with each award

        def plan(self, terms, config, details, event) -> AwardPlan: ...

``AwardPlan.once`` lists keys that may be awarded only once per resident and program: each is a
row of ``award_once`` under a unique constraint, so two concurrent awards cannot both pass.

Worked example: a library awards 50 pt per book report, at most one per book per resident::

    class BookReport(ProgramModule):
        kind = "book_report"
        title_ja, title_en = "読書感想文", "Book report"

        class Config(ModuleInput):
            pass

        class Details(ModuleInput):
            isbn: str = Field(pattern=r"^[0-9X-]{10,17}$")

        def plan(self, terms, config, details, event):
            return AwardPlan(amount=terms.amount, once=(f"isbn:{details.isbn}",))

    register(BookReport())

and a department's call ``POST /api/v1/issuer/programs/{id}/awards`` with
``{"resident_id": ..., "record_id": "R-123", "details": {"isbn": "4-00-310101-4"}}``
awards 50 pt, once per book. The caps, the budget and expiry apply without a line more.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from points.errors import InvalidInput

#: Once-keys are at most this long (they are stored under a unique constraint).
ONCE_KEY_MAX_LENGTH = 200


class ModuleInput(BaseModel):
    """Base of a module's Config and Details: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


@dataclass(frozen=True, slots=True)
class ProgramTerms:
    """What a module may know of its program: plain values (a module imports nothing of
    ``issuers.programs``, which imports the modules to check a new program's config)."""

    program_id: str
    #: Points per qualifying event, as the program was created with.
    amount: int


@dataclass(frozen=True, slots=True)
class AwardEvent:
    """The qualifying event as the department reported it."""

    resident_id: str
    record_id: str
    occurred_on: date
    fiscal_year: int


@dataclass(frozen=True, slots=True)
class AwardPlan:
    amount: int
    #: Keys awarded at most once per (program, resident).
    once: tuple[str, ...] = ()


class ProgramModule(ABC):
    kind: ClassVar[str]
    title_ja: ClassVar[str]
    title_en: ClassVar[str]
    Config: ClassVar[type[ModuleInput]]
    Details: ClassVar[type[ModuleInput]]

    @abstractmethod
    def plan(
        self, terms: ProgramTerms, config: Any, details: Any, event: AwardEvent
    ) -> AwardPlan: ...


class FixedAward(ProgramModule):
    """The program's amount for every event the department reports; nothing else."""

    kind = "fixed_award"
    title_ja, title_en = "定額付与", "Fixed award"

    class Config(ModuleInput):
        pass

    class Details(ModuleInput):
        pass

    def plan(self, terms: ProgramTerms, config: Any, details: Any, event: AwardEvent) -> AwardPlan:
        return AwardPlan(amount=terms.amount)


#: The checkup types a health-checkup program may reward (a city's programs pick theirs from
#: these): the code a department sends, and its names in Japanese and English. One list, used by
#: the validation, the OpenAPI description and the README.
CHECKUP_TYPES: dict[str, tuple[str, str]] = {
    "specific_health_checkup": ("特定健康診査", "Specific health checkup (ages 40 to 74)"),
    "elderly_health_checkup": ("後期高齢者健康診査", "Health checkup for ages 75 and over"),
    "cancer_screening": ("がん検診", "Cancer screening"),
    "dental_checkup": ("歯科健診", "Dental checkup"),
    "comprehensive_checkup": ("人間ドック", "Comprehensive medical checkup"),
}
CHECKUP_CODE_OF_NAME: dict[str, str] = {ja: code for code, (ja, _en) in CHECKUP_TYPES.items()}


class HealthCheckup(ProgramModule):
    """One award per resident per checkup type per fiscal year (specific health checkups,
    cancer screenings, ...: ``CHECKUP_TYPES``). The department's record id of the checkup is
    the award's record id, so reporting the same record twice awards once."""

    kind = "health_checkup"
    title_ja, title_en = "健診受診", "Health checkup"

    class Config(ModuleInput):
        checkup_types: list[str] = Field(
            min_length=1,
            max_length=len(CHECKUP_TYPES),
            description="The checkup types this program rewards, of: " + ", ".join(CHECKUP_TYPES),
        )

        @field_validator("checkup_types")
        @classmethod
        def _known(cls, checkup_types: list[str]) -> list[str]:
            unknown = [name for name in checkup_types if name not in CHECKUP_TYPES]
            if unknown:
                raise ValueError(
                    f"not a checkup type: {', '.join(unknown)} (one of {', '.join(CHECKUP_TYPES)})"
                )
            return checkup_types

    class Details(ModuleInput):
        checkup_type: str = Field(
            min_length=1,
            max_length=64,
            description="One of the program's checkup types, e.g. specific_health_checkup; "
            "its Japanese name (特定健康診査, がん検診, ...) is read as its code, so a "
            "department's spreadsheet may use either",
        )

        @field_validator("checkup_type", mode="before")
        @classmethod
        def _code_of_japanese_name(cls, value: Any) -> Any:
            return CHECKUP_CODE_OF_NAME.get(value, value) if isinstance(value, str) else value

    def plan(self, terms: ProgramTerms, config: Any, details: Any, event: AwardEvent) -> AwardPlan:
        if details.checkup_type not in config.checkup_types:
            raise InvalidInput(
                f"checkup_type {details.checkup_type!r} is not one of this program's: "
                f"{', '.join(config.checkup_types)}",
                field="details.checkup_type",
            )
        return AwardPlan(
            amount=terms.amount, once=(f"FY{event.fiscal_year}:{details.checkup_type}",)
        )


class VolunteeringAttendance(ProgramModule):
    """An award per event attended, reported by the department (scanning an event QR comes
    later); one per resident per event."""

    kind = "volunteering"
    title_ja, title_en = "ボランティア参加", "Volunteering attendance"

    class Config(ModuleInput):
        pass

    class Details(ModuleInput):
        event_id: str = Field(min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")

    def plan(self, terms: ProgramTerms, config: Any, details: Any, event: AwardEvent) -> AwardPlan:
        return AwardPlan(amount=terms.amount, once=(f"event:{details.event_id}",))


MODULES: dict[str, ProgramModule] = {}


def register(module: ProgramModule) -> ProgramModule:
    if module.kind in MODULES:
        raise ValueError(f"a module of kind {module.kind!r} is registered already")
    MODULES[module.kind] = module
    return module


for _builtin in (FixedAward(), HealthCheckup(), VolunteeringAttendance()):
    register(_builtin)


def module_for(kind: str) -> ProgramModule:
    try:
        return MODULES[kind]
    except KeyError:
        raise InvalidInput(
            f"unknown program module {kind!r}; one of {', '.join(sorted(MODULES))}",
            field="module",
        ) from None


def _parse(model: type[ModuleInput], value: dict[str, Any], where: str) -> ModuleInput:
    try:
        return model.model_validate(value)
    except ValidationError as invalid:
        first = invalid.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise InvalidInput(
            f"{where}.{location}: {first['msg']}" if location else f"{where}: {first['msg']}",
            field=f"{where}.{location}" if location else where,
        ) from None


def canonical_config(module: ProgramModule, config: dict[str, Any]) -> str:
    """The program's config, checked by its module, as canonical JSON."""
    parsed = _parse(module.Config, config, "config")
    return json.dumps(parsed.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


def parse_config(module: ProgramModule, config_json: str) -> ModuleInput:
    """A program's stored config (canonical JSON), parsed by its module."""
    return _parse(module.Config, json.loads(config_json), "config")


def parse_details(module: ProgramModule, details: dict[str, Any]) -> ModuleInput:
    return _parse(module.Details, details, "details")
