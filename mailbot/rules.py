"""Campaign rules: ``rules/*.toml`` read with tomllib into a validated :class:`CampaignRules`.

Everything campaign-specific (programs, deadline, addresses, keywords, messages quoted from the
notice) lives in the rules file; nothing of it is hard-coded in Python.  ``load_rules`` reports
every problem of a bad file at once (key path and reason, one per line) as a
:class:`~mailbot.errors.ConfigError`.  See docs/RULES.md.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from mailbot.bundled import default_rules_file
from mailbot.config import read_toml
from mailbot.errors import ConfigError
from mailbot.time_zones import known_time_zone, zone
from mailbot.annex3 import OFFICIAL_LABELS
from mailbot.normalize import compact, match_key



# A correction received later than this before the deadline says there is no time to resend.
RESEND_MARGIN = timedelta(hours=1)


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class Campaign(_Model):
    id: str = Field(min_length=1, description="stable campaign id, recorded with every decision")
    version: str = Field(min_length=1, description="rules version, recorded with every decision")
    title: str = Field(min_length=1)
    document: str = ""
    issued: date | None = None
    one_program_per_person: bool = True


class Deadline(_Model):
    at: datetime = Field(description="local wall-clock time in `timezone`, without offset")
    timezone: str = "Asia/Shanghai"
    inclusive: bool = True

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        return known_time_zone(value)

    @field_validator("at")
    @classmethod
    def _naive(cls, value: datetime) -> datetime:
        if value.tzinfo is not None:
            raise ValueError("give local time without offset; the zone goes in `timezone`")
        return value

    @property
    def aware(self) -> datetime:
        """The deadline as an aware datetime in its time zone."""
        return self.at.replace(tzinfo=zone(self.timezone))

    def leaves_time_to_resend(self, received: datetime) -> bool:
        """Whether a sender told at ``received`` (aware) to fix a form still has
        :data:`RESEND_MARGIN` before the deadline to send it again."""
        return received + RESEND_MARGIN <= self.aware

    def is_on_time(self, received: datetime) -> bool:
        """Whether a mail that reached the mailbox at ``received`` (aware) is on time."""
        if received.tzinfo is None:
            raise ValueError("received must be timezone-aware")
        return received <= self.aware if self.inclusive else received < self.aware


class Intake(_Model):
    address: str = Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
    stamped_scan_required: bool = False
    late_change_contact: str = ""
    help_contact: str = Field("", description="whom senders may ask about anything else (shown in every reply)")
    max_new_per_mail: int = Field(30, gt=0, description=(
        "a mail registering more new teachers than this is held for staff as a whole"))


class Fees(_Model):
    cap_yuan: int = Field(gt=0)
    days: int = Field(gt=0)
    note: str = ""


class Platform(_Model):
    name: str = Field(min_length=1)
    url: str = Field(pattern=r"^https?://\S+$")
    menu_path: tuple[str, ...] = ()

    @property
    def menu(self) -> str:
        """Menu path as shown to people: ``指令性培训—省级骨干培训``."""
        return "—".join(self.menu_path)


class Training(_Model):
    """Defaults shared by every program (each program may override them)."""

    format: str = Field(min_length=1)
    days: int = Field(gt=0)
    hours: int = Field(gt=0)
    seats: int = Field(gt=0)
    finish_by: str = ""


class FormRules(_Model):
    title: str = Field(min_length=1)
    required_columns: tuple[str, ...] = ("program", "name", "gender", "email", "id_number", "phone")
    institution_required: bool = True

    @field_validator("required_columns")
    @classmethod
    def _known_columns(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        unknown = [c for c in value if c not in OFFICIAL_LABELS]
        if unknown:
            raise ValueError(f"unknown column key(s) {unknown}; known: {sorted(OFFICIAL_LABELS)}")
        return value


class IdentityRules(_Model):
    min_age: int = Field(18, ge=0)
    max_age: int = Field(75, gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> IdentityRules:
        if self.min_age >= self.max_age:
            raise ValueError("min_age must be below max_age")
        return self


class SecondaryVocational(_Model):
    keywords: tuple[str, ...] = Field(min_length=1)
    neutral_phrases: tuple[str, ...] = ()
    exceptions: tuple[str, ...] = ()


class OutsidePrograms(_Model):
    explanation: str = Field(min_length=1, description="the notice's words, quoted to senders")
    certificates: tuple[str, ...] = ()


class ProgramMatching(_Model):
    """How written program names are compared (see mailbot.normalize.match_key)."""

    strip_words: tuple[str, ...] = (
        "1+X", "职业技能等级证书", "职业技能等级", "证书制度试点", "师资培训班", "师资培训",
        "培训班", "证书", "培训",
    )
    levels: tuple[str, ...] = ("初级", "中级", "高级")
    suggestion_cutoff: float = Field(55.0, ge=0, le=100)
    suggestion_limit: int = Field(3, gt=0)


class Program(_Model):
    key: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$", description="stable id used in the database")
    number: int = Field(gt=0, description="position in Annex 1")
    name: str = Field(min_length=1, description="official full name")
    short_name: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    host: str = Field(min_length=1, description="host institution (承办单位)")
    evaluation_org: str = Field(min_length=1, description="partner evaluation organisation")
    format: str | None = None  # None in the file -> [training].format (always set after loading)
    days: int | None = Field(None, gt=0)
    hours: int | None = Field(None, gt=0)
    seats: int | None = Field(None, gt=0)

    @field_validator("name")
    @classmethod
    def _full_name(cls, value: str) -> str:
        if not value.endswith("职业技能等级证书"):
            raise ValueError("the official full name ends in 职业技能等级证书")
        return value


class Demand(_Model):
    """A school's reported training demand for one program (培训需求数): registrations beyond it
    wait for staff (``held``) instead of taking seats."""

    institution: str = Field(min_length=1, description="填报单位 as the school writes it")
    program: str = Field(min_length=1, description="a program's name, short name or alias")
    teachers: int = Field(ge=0)


def school_key(name: str) -> str:
    """A school's name as compared everywhere: compacted, without （盖章）."""
    return compact(name).replace("（盖章）", "").replace("(盖章)", "")


PLACEHOLDER_DOMAINS = ("example.edu.cn", "example.com", "example.org", "example.net")
"""Addresses under these domains are examples left for staff to replace: never mailed."""


class Host(_Model):
    """A host institution (承办单位) and where its rosters go (``mailbot rosters send``)."""

    name: str = Field(min_length=1, description="as in the programs' `host`")
    contact: str = Field("", description="the person who receives the roster, for the greeting")
    email: str = Field("", pattern=r"^$|^[^@\s]+@[^@\s]+\.[^@\s]+$",
                       description="roster address; empty: not mailed")

    @property
    def address(self) -> str:
        """The address to mail, or ``""`` when none is set or it is still a placeholder."""
        domain = self.email.rpartition("@")[2].lower()
        if not self.email or any(domain == d or domain.endswith("." + d) for d in PLACEHOLDER_DOMAINS):
            return ""
        return self.email


class CampaignRules(_Model):
    campaign: Campaign
    deadline: Deadline
    intake: Intake
    fees: Fees
    platform: Platform
    training: Training
    form: FormRules
    identity: IdentityRules = IdentityRules()
    secondary_vocational: SecondaryVocational
    outside_programs: OutsidePrograms
    program_matching: ProgramMatching = ProgramMatching()
    programs: tuple[Program, ...] = Field(min_length=1)
    demand: tuple[Demand, ...] = ()
    hosts: tuple[Host, ...] = ()
    expected_institutions: tuple[str, ...] = Field(
        (), description="schools expected to register (填报单位 as written); the digest names those still silent")
    _demand_cache: dict[str, dict[str, int]] | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _apply_training_defaults(self) -> CampaignRules:
        t = self.training
        resolved = tuple(
            p.model_copy(
                update={
                    "format": p.format or t.format,
                    "days": p.days or t.days,
                    "hours": p.hours or t.hours,
                    "seats": p.seats or t.seats,
                }
            )
            for p in self.programs
        )
        object.__setattr__(self, "programs", resolved)
        return self

    def program(self, key: str) -> Program:
        """The program with this key (KeyError when absent)."""
        for p in self.programs:
            if p.key == key:
                return p
        raise KeyError(key)

    def program_by_name(self, name: str) -> Program | None:
        """The program whose official full name is exactly ``name``."""
        return next((p for p in self.programs if p.name == name), None)

    def reported_demand(self, institution: str) -> dict[str, int] | None:
        """Teachers per program (official names) the school reported, or None when the rules
        give no demand for it.  A program it did not report counts as 0."""
        key = school_key(institution)
        if not key:
            return None
        table = self._demand_table()
        return dict(table[key]) if key in table else None

    def _demand_table(self) -> dict[str, dict[str, int]]:
        """school key -> program name -> teachers, built once."""
        if self._demand_cache is None:
            table: dict[str, dict[str, int]] = {}
            for d in self.demand:
                program = self.program_for_text(d.program)
                if program is not None:
                    table.setdefault(school_key(d.institution), {})[program.name] = d.teachers
            self._demand_cache = table
        return self._demand_cache

    def program_for_text(self, text: str) -> Program | None:
        """The program a rules-file text names: exactly its name, short name or an alias
        (compared as the form's program column is)."""
        pm = self.program_matching
        wanted = match_key(text, pm.strip_words, pm.levels)
        for p in self.programs:
            if any(match_key(t, pm.strip_words, pm.levels) == wanted for t in (p.name, p.short_name, *p.aliases)):
                return p
        return None

    def host(self, name: str) -> Host | None:
        """The ``[[hosts]]`` entry of a host institution, if the rules give one."""
        return next((h for h in self.hosts if h.name == name), None)

    def silent_institutions(self, submitted: Iterable[str]) -> tuple[str, ...]:
        """The expected schools (``expected_institutions``) none of ``submitted`` names, in the
        rules' order; names are compared as everywhere (``school_key``)."""
        seen = {school_key(name) for name in submitted}
        return tuple(name for name in self.expected_institutions if school_key(name) not in seen)

    @property
    def total_seats(self) -> int:
        return sum(p.seats or 0 for p in self.programs)


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(err: Any) -> str:
    where = _loc(tuple(err["loc"]))
    msg = err["msg"]
    if err["type"] not in ("missing", "extra_forbidden") and not isinstance(err.get("input"), dict):
        shown = repr(err.get("input"))
        msg += f" (got {shown[:60]})"
    if err["type"] == "extra_forbidden":
        msg = "unknown key (typo?)"
    return f"{where}: {msg}"


def _semantic_problems(rules: CampaignRules) -> list[str]:
    """Cross-field checks pydantic cannot express per field."""
    problems: list[str] = []
    pm = rules.program_matching

    def key(text: str) -> str:
        return match_key(text, pm.strip_words, pm.levels)

    seen: dict[str, str] = {}
    for i, p in enumerate(rules.programs):
        for field, value in (("key", p.key), ("number", str(p.number)), ("name", p.name)):
            tag = f"{field}:{value}"
            if tag in seen:
                problems.append(f"programs[{i}].{field}: {value!r} already used by {seen[tag]}")
            else:
                seen[tag] = f"programs[{i}]"
    owners: dict[str, str] = {}
    for i, p in enumerate(rules.programs):
        for text in (p.name, p.short_name, *p.aliases):
            k = key(text)
            where = f"programs[{i}] ({p.short_name})"
            if not k:
                problems.append(f"programs[{i}]: alias {text!r} is empty once normalised")
            elif owners.setdefault(k, where) != where:
                problems.append(f"programs[{i}]: alias {text!r} also names {owners[k]}")
    names = [(i, key(text)) for i, p in enumerate(rules.programs) for text in (p.name, p.short_name, *p.aliases)]
    for i, p in enumerate(rules.programs):
        for text in p.aliases:
            k = key(text)
            other = next((j for j, n in names if j != i and k and k in n), None)
            if other is not None:
                problems.append(f"programs[{i}]: alias {text!r} is part of a name of programs[{other}] "
                                f"({rules.programs[other].short_name}); it could not tell them apart")
    for j, cert in enumerate(rules.outside_programs.certificates):
        k = key(cert)
        where = f"outside_programs.certificates[{j}]"
        if not k:
            problems.append(f"{where}: {cert!r} is empty once normalised")
        elif k in owners and owners[k] != where:
            problems.append(f"{where}: {cert!r} is also a program of this campaign ({owners[k]})")
        else:
            owners[k] = where
    pairs: dict[tuple[str, str], int] = {}
    for i, d in enumerate(rules.demand):
        program = rules.program_for_text(d.program)
        if program is None:
            problems.append(f"demand[{i}].program: {d.program!r} is not a program of this campaign")
        elif not school_key(d.institution):
            problems.append(f"demand[{i}].institution: empty once normalised")
        elif (school_key(d.institution), program.name) in pairs:
            first = pairs[(school_key(d.institution), program.name)]
            problems.append(f"demand[{i}]: {d.institution} / {program.short_name} already given in demand[{first}]")
        else:
            pairs[(school_key(d.institution), program.name)] = i
    program_hosts = {p.host for p in rules.programs}
    host_names: set[str] = set()
    for i, h in enumerate(rules.hosts):
        if h.name in host_names:
            problems.append(f"hosts[{i}].name: {h.name!r} already listed")
        elif h.name not in program_hosts:
            problems.append(f"hosts[{i}].name: {h.name!r} hosts no program (typo?)")
        host_names.add(h.name)
    expected: dict[str, int] = {}
    for i, name in enumerate(rules.expected_institutions):
        k = school_key(name)
        if not k:
            problems.append(f"expected_institutions[{i}]: empty once normalised")
        elif k in expected:
            problems.append(f"expected_institutions[{i}]: {name!r} already given in expected_institutions[{expected[k]}]")
        else:
            expected[k] = i
    if any(not keyword for keyword in rules.secondary_vocational.keywords):
        problems.append("secondary_vocational.keywords: empty keyword")
    return problems


def parse_rules(data: dict[str, Any], source: str = "<rules>") -> CampaignRules:
    """Validate an already parsed TOML document; raises ConfigError listing every problem."""
    try:
        rules = CampaignRules.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, [_describe(e) for e in exc.errors()]) from exc
    problems = _semantic_problems(rules)
    if problems:
        raise ConfigError(source, problems)
    return rules


def load_rules(path: Path | str | None = None) -> CampaignRules:
    """Read and validate a rules file (default: the bundled ``rules/zhejiang-2020-1x.toml``)."""
    path = Path(path) if path is not None else default_rules_file()
    return parse_rules(read_toml(path), str(path))
