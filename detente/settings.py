"""Daemon settings: one YAML file plus ``DETENTE_``-prefixed environment variables.

The file (``config/detente.yaml``, or ``--config``, or ``DETENTE_CONFIG``) holds what an
operator edits; secrets may come from the environment instead, for example
``DETENTE_HUBSPOT__TOKEN``. Environment variables win over the file. Every problem is
reported at once, located (``file:line:col`` or the variable name) and explained.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from email.utils import parseaddr
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

from detente.errors import SettingsError

DEFAULT_CONFIG = Path("config/detente.yaml")
ENV_PREFIX = "DETENTE_"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SalesforceSettings(_Section):
    """How to reach and authenticate against Salesforce."""

    instance_url: str | None = Field(None, description="https://yourorg.my.salesforce.com")
    login_url: str = "https://login.salesforce.com"
    auth: Literal["password", "refresh_token", "jwt"] = "password"
    client_id: str | None = None
    client_secret: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    refresh_token: SecretStr | None = None
    private_key_file: Path | None = None
    api_version: str = Field("59.0", pattern=r"^\d{2}\.\d$")
    ca_file: Path | None = Field(None, description="extra CA bundle to trust (a sandbox's CA)")
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    # Pulling: page sizes, when to switch to Bulk API 2.0, how far back each pull re-reads.
    page_size: int = Field(2000, ge=200, le=2000, description="REST query batch size (Sforce-Query-Options)")
    bulk_threshold: int = Field(
        10_000, ge=0, description="records to read above which a pull switches to a Bulk API 2.0 query job"
    )
    bulk_max_records: int = Field(50_000, ge=1, description="records per Bulk API 2.0 result chunk (one page)")
    bulk_poll_seconds: float = Field(1.0, gt=0, le=60, description="first wait before polling a Bulk job")
    bulk_timeout_seconds: float = Field(3600.0, gt=0, description="give up on a Bulk job after this long")
    lookback_seconds: float = Field(300.0, ge=0, description="each incremental pull re-reads this overlap")
    deletes_every_seconds: float = Field(
        900.0, ge=0, description="how often an incremental pull also asks for deleted records (0: every pull)")
    # Retries and call budgets: every attempt, retries included, counts.
    retries: int = Field(5, ge=0, le=20, description="retries of a call answered 429/5xx or timed out")
    backoff_factor: float = Field(0.5, ge=0, le=60, description="retry backoff: factor x 2^(retry-1) seconds")
    backoff_max_seconds: float = Field(60.0, ge=0, le=600)
    retry_after_max_seconds: int = Field(120, ge=0, le=3600, description="cap on a Retry-After wait")
    calls_per_run: int | None = Field(None, ge=1, description="API calls one pull may spend")
    calls_per_day: int | None = Field(None, ge=1, description="API calls detente may spend per day")
    quota_reserve: int = Field(
        0, ge=0, description="calls of the org's daily API allocation left for other integrations"
    )


class HubSpotSettings(_Section):
    """How to reach and authenticate against HubSpot."""

    base_url: str = "https://api.hubapi.com"
    token: SecretStr | None = None
    ca_file: Path | None = None
    timeout_seconds: float = Field(30.0, gt=0, le=600)
    # Pulling: page sizes and how far back each incremental pull re-reads.
    page_size: int = Field(200, ge=1, le=200, description="search results per call (HubSpot allows 200)")
    records_per_page: int = Field(
        1000, ge=100, le=1000, description="records per committed page; also ids per associations batch read"
    )
    lookback_seconds: float = Field(300.0, ge=0, description="each incremental pull re-reads this overlap")
    deletes_every_seconds: float = Field(
        900.0, ge=0, description="how often an incremental pull also asks for deleted records (0: every pull)")
    max_value_chars: int = Field(65_536, ge=1, description="longer property values are quarantined")
    # Throttling below HubSpot's limits (190 calls per rolling 10 s, search 5 per second).
    burst_per_10s: int = Field(170, ge=1, description="API calls detente allows itself per rolling 10 seconds")
    search_per_second: int = Field(4, ge=1, description="search calls detente allows itself per second")
    # Retries and call budgets: every attempt, retries included, counts.
    retries: int = Field(6, ge=0, le=20, description="retries of a call answered 429/5xx or timed out")
    backoff_factor: float = Field(1.0, ge=0, le=60, description="retry backoff: factor x 2^(retry-1) seconds")
    backoff_max_seconds: float = Field(60.0, ge=0, le=600)
    retry_after_max_seconds: int = Field(120, ge=0, le=3600, description="cap on a Retry-After wait")
    calls_per_run: int | None = Field(None, ge=1, description="API calls one pull may spend")
    calls_per_day: int | None = Field(None, ge=1, description="API calls detente may spend per day")
    quota_reserve: int = Field(
        0, ge=0, description="calls of the account's daily HubSpot limit left for other integrations"
    )


class StoreSettings(_Section):
    url: str = "sqlite:///detente.db"


TASK_SYSTEMS: dict[str, Literal["salesforce", "hubspot"]] = {
    "marketing": "hubspot", "sales": "salesforce", "partner": "salesforce"}


class WritebackSettings(_Section):
    """What detente may write into the CRMs, and how much at once."""

    enabled: bool = Field(False, description="detente writes to the CRMs only when this is true")
    dry_run: bool = Field(False, description="plan and record every write, send none")
    max_writes_per_run: int = Field(
        1000, ge=1, description="a plan with more writes stops the run and is reported (a bulk mistake in rules)")
    max_attempts: int = Field(3, ge=1, le=20, description="tries of a write the CRM refused for a passing reason")
    on_override: Literal["leave", "restore"] = Field(
        "leave", description="a field someone changed after detente wrote it: report it, or write it back")
    task_system: dict[str, Literal["salesforce", "hubspot"]] = Field(
        default_factory=lambda: dict(TASK_SYSTEMS),
        description="where each team works its tasks (the team that owes an SLA gets its tasks there)")


class DaemonSettings(_Section):
    """``detente run``: how often each job runs, where health and metrics are served."""

    rules: Path = Field(Path("config/rules.yaml"), description="the rules file or folder (watched for edits)")
    pull_seconds: float = Field(60.0, ge=1, description="pull and normalize each CRM this often (a pull that "
                                "brings changes is audited and written back right after)")
    audit_seconds: float = Field(300.0, ge=1, description="audit this often (clocks fall due without new data)")
    writeback_seconds: float = Field(300.0, ge=1, description="plan and apply write-back this often")
    listen: str = Field("127.0.0.1:8477", pattern=r"^[^:\s]+:\d{1,5}$", description="host:port of /healthz, "
                        "/readyz and /metrics (loopback unless you mean it)")
    shutdown_seconds: float = Field(30.0, gt=0, le=600, description="a stopping job may finish for this long")


class DashboardSettings(_Section):
    """The dashboard: ``detente serve``, and beside /healthz on the daemon's ``daemon.listen``."""

    listen: str = Field("127.0.0.1:8478", pattern=r"^(\[[0-9A-Fa-f:.]+\]|[^:\s\[\]]+):\d{1,5}$",
                        description="host:port of ``detente serve`` ([::1]:8478 for IPv6); beyond loopback "
                        "it needs dashboard.token")
    token: SecretStr | None = Field(None, description="required when the dashboard listens beyond loopback: "
                                    "sent as Authorization: Bearer, or once as ?token= (then a cookie)")
    cache_seconds: float = Field(300.0, ge=0, description="a report is computed again after a new audit, "
                                 "or after this long (its as-of moves on)")


class CronSchedule(_Section):
    """When a job runs, as cron fields (APScheduler's CronTrigger: ``mon-fri``, ``*/2``, ``8,12``)."""

    month: str | int | None = None
    day: str | int | None = None
    day_of_week: str | int | None = "mon"
    hour: str | int | None = 8
    minute: str | int | None = 0

    def fields(self) -> dict[str, str | int]:
        return {k: v for k, v in self.__dict__.items() if v is not None}

    @model_validator(mode="after")
    def _is_a_schedule(self) -> CronSchedule:
        from apscheduler.triggers.cron import CronTrigger

        try:
            CronTrigger(**self.fields(), timezone="UTC")
        except ValueError as exc:
            raise ValueError(f"not a cron schedule ({exc}); expected fields such as day_of_week: mon, hour: 8, "
                             "minute: 0") from None
        return self


def _address(value: str, what: str) -> str:
    address = parseaddr(value)[1]
    if "@" not in address or address.startswith("@") or address.endswith("@") or " " in address:
        raise ValueError(f"{what} '{value}' is not an email address; expected name@example.com")
    return value


class SmtpSettings(_Section):
    """The SMTP server the digest is sent through."""

    host: str | None = Field(None, description="smtp.yourorg.com")
    port: int | None = Field(None, ge=1, le=65535, description="default: 465 with ssl, else 587")
    starttls: bool | None = Field(None, description="upgrade the connection with STARTTLS (default: on unless ssl)")
    ssl: bool = Field(False, description="implicit TLS from the first byte (usually port 465)")
    username: str | None = None
    password: SecretStr | None = None
    from_address: str | None = Field(None, description="the sender, e.g. detente <detente@yourorg.com>")
    ca_file: Path | None = Field(None, description="extra CA bundle to trust (a private mail relay's CA)")
    timeout_seconds: float = Field(30.0, gt=0, le=600)

    @property
    def use_starttls(self) -> bool:
        return (not self.ssl) if self.starttls is None else self.starttls

    @property
    def effective_port(self) -> int:
        return self.port or (465 if self.ssl else 587)

    @field_validator("from_address")
    @classmethod
    def _from_is_an_address(cls, value: str | None) -> str | None:
        return None if value is None else _address(value, "the sender")

    @model_validator(mode="after")
    def _consistent(self) -> SmtpSettings:
        problems = []
        if self.ssl and self.starttls:
            problems.append("ssl and starttls are both true; choose one: ssl (implicit TLS, usually port 465) "
                            "or starttls (usually port 587)")
        if self.password is not None and not self.username:
            problems.append("a password is set without a username; set username too")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class Audiences(_Section):
    """Who receives each digest (a list of addresses per audience)."""

    marketing: list[str] = Field(default_factory=list)
    sales: list[str] = Field(default_factory=list)
    leadership: list[str] = Field(default_factory=list)

    @field_validator("marketing", "sales", "leadership")
    @classmethod
    def _addresses(cls, values: list[str]) -> list[str]:
        for value in values:
            _address(value, "the recipient")
        return values


class DigestSettings(_Section):
    """The emailed digest: the last complete period's numbers and the open SLA breaches."""

    enabled: bool = Field(False, description="the daemon sends the digest on its schedule only when this is true")
    schedule: CronSchedule = CronSchedule()
    timezone: str = Field("UTC", description="the schedule's time zone (an IANA name such as America/New_York); "
                          "periods are UTC, so east of UTC schedule after Monday 00:00 UTC")
    period: Literal["week", "month", "quarter", "year"] = Field(
        "week", description="the digest reports the last complete period of this kind")
    smtp: SmtpSettings = SmtpSettings()
    audiences: Audiences = Audiences()
    dashboard_url: str | None = Field(None, description="linked from the digest, e.g. https://detente.yourorg.com/")
    max_breaches_per_owner: int = Field(20, ge=1, le=1000, description="breaches listed per owner; "
                                        "the rest are counted")

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo

        try:
            ZoneInfo(value)
        except (KeyError, ValueError, OSError):  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"unknown time zone '{value}'; expected an IANA name such as Europe/Berlin or UTC") \
                from None
        return value

    @field_validator("dashboard_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("not an http(s) URL; expected something like https://detente.yourorg.com/")
        return value

    @model_validator(mode="after")
    def _complete_when_enabled(self) -> DigestSettings:
        if not self.enabled:
            return self
        missing = []
        if not self.smtp.host:
            missing.append("smtp.host (the SMTP server to send through)")
        if not self.smtp.from_address:
            missing.append("smtp.from_address (the sender, e.g. detente@yourorg.com)")
        if not (self.audiences.marketing or self.audiences.sales or self.audiences.leadership):
            missing.append("audiences (at least one address under marketing, sales or leadership)")
        if missing:
            raise ValueError("enabled is true but " + " and ".join(missing) + (" is" if len(missing) == 1 else
                             " are") + " not set; set them or set digest.enabled: false")
        return self


class WebhookSettings(_Section):
    """SLA breaches posted to a Slack-compatible incoming webhook as the audit finds them."""

    enabled: bool = Field(False, description="post breaches only when this is true")
    url: SecretStr | None = Field(None, description="the incoming-webhook URL (a secret: it is the credential)")
    timeout_seconds: float = Field(10.0, gt=0, le=120)
    retries: int = Field(3, ge=0, le=10, description="retries of a post answered 429/5xx or not answered")
    backoff_factor: float = Field(1.0, ge=0, le=60, description="retry backoff: factor x 2^(retry-1) seconds")
    backoff_max_seconds: float = Field(30.0, ge=0, le=600)
    retry_after_max_seconds: int = Field(60, ge=0, le=3600, description="cap on a Retry-After wait")
    breaches_per_message: int = Field(10, ge=1, le=40, description="breaches batched into one message")
    max_messages_per_run: int = Field(20, ge=1, le=1000, description="the rest wait for the next run")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parts = urlsplit(value.get_secret_value())
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError("not an http(s) URL; expected the incoming-webhook URL the service gave you, "
                                 "such as https://hooks.slack.com/services/...")
        return value

    @model_validator(mode="after")
    def _url_when_enabled(self) -> WebhookSettings:
        if self.enabled and (self.url is None or not self.url.get_secret_value()):
            raise ValueError("enabled is true but url is not set; set DETENTE_WEBHOOK__URL to the incoming-webhook "
                             "URL or set webhook.enabled: false")
        return self


class LogSettings(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class Settings(BaseSettings):
    """All of detente's settings, validated once at start-up and passed down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", validate_default=True
    )

    salesforce: SalesforceSettings = SalesforceSettings()
    hubspot: HubSpotSettings = HubSpotSettings()
    store: StoreSettings = StoreSettings()
    log: LogSettings = LogSettings()
    writeback: WritebackSettings = WritebackSettings()
    daemon: DaemonSettings = DaemonSettings()
    dashboard: DashboardSettings = DashboardSettings()
    digest: DigestSettings = DigestSettings()
    webhook: WebhookSettings = WebhookSettings()

    yaml_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls.yaml_file is not None:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=cls.yaml_file))
        return tuple(sources)

    def secret_values(self) -> list[str]:
        """Every secret in these settings, so the log redactor can mask them verbatim."""
        found: list[str] = []
        for section in (self.salesforce, self.hubspot, self.dashboard, self.digest.smtp, self.webhook):
            for value in section.__dict__.values():
                if isinstance(value, SecretStr) and value.get_secret_value():
                    found.append(value.get_secret_value())
        if self.webhook.url is not None and urlsplit(self.webhook.url.get_secret_value()).path.strip("/"):
            # HTTP libraries name a request by its path alone; a webhook's path is its credential.
            found.append(urlsplit(self.webhook.url.get_secret_value()).path)
        return found


def config_path(explicit: str | Path | None, env: Mapping[str, str] | None = None) -> Path:
    """The settings file to read: ``--config``, then ``DETENTE_CONFIG``, then the default."""
    source: Mapping[str, str] = os.environ if env is None else env
    if explicit:
        return Path(explicit)
    if source.get("DETENTE_CONFIG"):
        return Path(source["DETENTE_CONFIG"])
    return DEFAULT_CONFIG


def load_settings(path: str | Path | None = None, *, required: bool = False) -> Settings:
    """Read and validate the settings; raise SettingsError listing every problem."""
    file = config_path(path)
    problems: list[str] = []
    lines: dict[tuple[str, ...], tuple[int, int]] = {}
    if file.exists():
        try:
            text = file.read_text(encoding="utf-8")
            node = yaml.compose(text)
            # The settings source constructs the document again; construct it here first so a
            # node PyYAML cannot build (a list as a key, a python/ tag) is reported, located.
            data = yaml.safe_load(text)
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError([f"{file}: cannot read the settings file ({exc})"]) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{file}:{mark.line + 1}:{mark.column + 1}" if mark else str(file)
            problem = getattr(exc, "problem", None) or "malformed YAML"
            raise SettingsError([f"{where}: {problem}; expected valid YAML"]) from None
        if node is not None and not isinstance(node, yaml.MappingNode):
            raise SettingsError([f"{file}:1:1: the settings file must be a mapping of sections"])
        # pydantic-settings lower-cases each top-level key, so one that is not text (1, true,
        # null, an empty key) would fail inside it as a traceback rather than a problem.
        not_names = [
            f"{file}:{key.start_mark.line + 1}:{key.start_mark.column + 1}: '{key.value}' is not a section name; "
            "expected a name such as salesforce or hubspot"
            for key, _ in (node.value if node is not None else [])
            if key.tag not in ("tag:yaml.org,2002:str", "tag:yaml.org,2002:merge")
        ]
        if not not_names and isinstance(data, dict) and not all(isinstance(k, str) for k in data):
            not_names.append(f"{file}:1:1: a key merged in with << is not a section name; expected names such "
                             "as salesforce or hubspot")
        if not_names:
            raise SettingsError(not_names)
        _index_lines(node, (), lines)
    elif required or path is not None:
        raise SettingsError([f"{file}: settings file not found; pass --config PATH or set DETENTE_CONFIG"])

    class _Bound(Settings):
        yaml_file = file if file.exists() else None

    try:
        loaded = _Bound()
    except ValidationError as exc:
        for err in exc.errors():
            loc = tuple(str(p) for p in err["loc"])
            problems.append(_describe(file, loc, err, lines))
        raise SettingsError(problems) from None
    return Settings.model_validate(loaded.model_dump())


def _index_lines(node: Any, prefix: tuple[str, ...], out: dict[tuple[str, ...], tuple[int, int]]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, str(key.value))
            out[path] = (key.start_mark.line + 1, key.start_mark.column + 1)
            _index_lines(value, path, out)


def _describe(
    file: Path, loc: tuple[str, ...], err: Any, lines: dict[tuple[str, ...], tuple[int, int]]
) -> str:
    key = ".".join(loc)
    env_name = ENV_PREFIX + "__".join(p.upper() for p in loc)
    if env_name in os.environ:
        where = f"environment variable {env_name}"
    elif loc in lines:
        line, col = lines[loc]
        where = f"{file}:{line}:{col}"
    else:
        parent = next((loc[:i] for i in range(len(loc) - 1, 0, -1) if loc[:i] in lines), None)
        where = f"{file}:{lines[parent][0]}:{lines[parent][1]}" if parent else str(file)
    if err["type"] == "extra_forbidden":
        return f"{where}: unknown key '{key}'; remove it or check its spelling"
    message = err["msg"]
    got = err.get("input")
    shown = "" if isinstance(got, (dict, list)) or got is None or _is_secret(loc) else f" (got {got!r})"
    return f"{where}: {key}: {message}{shown}"


def _is_secret(loc: tuple[str, ...]) -> bool:
    return any(p in {"password", "token", "client_secret", "refresh_token"} for p in loc) or loc[:2] == (
        "webhook", "url")
