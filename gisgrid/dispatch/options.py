"""``[dispatch]``: channels, who gets which channel, reminders, escalation, retries; checked once.

Secrets (robot webhook addresses, which carry their key; DingTalk's signing secret; SMTP passwords;
bearer tokens) are never written in the config: the config names the environment variables that hold
them (``url_env``, ``secret_env``, ``password_env``, ``token_env``), and :func:`read_secrets` reads them
only when something is sent.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gisgrid._errors import ConfigError
from gisgrid.io.config import unknown_keys

__all__ = [
    "CHANNEL_KINDS",
    "Channel",
    "DispatchOptions",
    "Escalation",
    "Retry",
    "Route",
    "parse_dispatch",
    "read_secrets",
]

#: The kinds of channel ``[dispatch.channels.NAME] kind`` may name.
CHANNEL_KINDS: tuple[str, ...] = ("wecom", "dingtalk", "email", "webhook")
#: Bytes of one message body per kind: WeCom's markdown ``content`` is at most 4,096 bytes of UTF-8;
#: DingTalk documents no smaller limit, so the same cut keeps both readable on a phone.
MAX_BYTES: dict[str, int] = {"wecom": 4096, "dingtalk": 4096, "email": 100_000, "webhook": 100_000}
#: Messages per minute per robot (both robots allow 20); e-mail and webhooks get a looser default.
RATE_PER_MINUTE: dict[str, int] = {"wecom": 20, "dingtalk": 20, "email": 60, "webhook": 60}

_TOP_KEYS = ("channels", "default", "command_center", "owners", "base_url", "max_items", "remind_days_before",
             "retry", "escalation", "timeout_s")
_CHANNEL_KEYS = {
    "wecom": ("kind", "url_env", "rate_per_minute", "rate_window_s", "max_bytes", "timeout_s"),
    "dingtalk": ("kind", "url_env", "secret_env", "rate_per_minute", "rate_window_s", "max_bytes", "timeout_s"),
    "email": ("kind", "host", "port", "sender", "to", "username_env", "password_env", "starttls", "ca_file",
              "rate_per_minute", "rate_window_s", "max_bytes", "timeout_s"),
    "webhook": ("kind", "url", "url_env", "token_env", "rate_per_minute", "rate_window_s", "max_bytes",
                "timeout_s"),
}
_RETRY_KEYS = ("attempts", "backoff_s", "max_backoff_s", "max_total_s")
_ESCALATION_KEYS = ("after_days", "department", "departments")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_EMAIL = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")


@dataclass(frozen=True)
class Channel:
    """One ``[dispatch.channels.NAME]`` table.

    Attributes
    ----------
    name, kind
        The channel's name in the config and one of :data:`CHANNEL_KINDS`.
    url_env, secret_env, token_env, username_env, password_env
        Names of the environment variables holding the secrets (never the secrets).
    url
        A webhook address that is not secret (``webhook`` only).
    host, port, sender, to, starttls, ca_file
        SMTP server, sender and recipients; STARTTLS is on unless ``starttls = false``; ``ca_file`` trusts a
        private certificate authority besides the system's.
    rate_per_minute, rate_window_s
        At most ``rate_per_minute`` requests in any ``rate_window_s`` seconds (default 60).
    max_bytes
        The largest message body, in bytes of UTF-8.
    timeout_s
        Seconds to wait for one request.
    """

    name: str
    kind: str
    url_env: str | None = None
    secret_env: str | None = None
    token_env: str | None = None
    url: str | None = None
    host: str | None = None
    port: int = 587
    sender: str | None = None
    to: tuple[str, ...] = ()
    username_env: str | None = None
    password_env: str | None = None
    starttls: bool = True
    ca_file: str | None = None
    rate_per_minute: int = 20
    rate_window_s: float = 60.0
    max_bytes: int = 4096
    timeout_s: float = 10.0

    def secret_names(self) -> tuple[str, ...]:
        """The environment variables this channel reads."""
        names = (self.url_env, self.secret_env, self.token_env, self.username_env, self.password_env)
        return tuple(n for n in names if n)


@dataclass(frozen=True)
class Route:
    """Where one owner's messages go: a channel, and for e-mail the owner's own addresses."""

    channel: str
    to: tuple[str, ...] = ()


@dataclass(frozen=True)
class Retry:
    """``[dispatch.retry]``: attempts per message and the backoff between them (doubling, capped)."""

    attempts: int = 4
    backoff_s: float = 2.0
    max_backoff_s: float = 60.0
    max_total_s: float = 300.0


@dataclass(frozen=True)
class Escalation:
    """``[dispatch.escalation]`` (逐级上报): days overdue before level 1 (a department) and level 2 (the center).

    ``after_days`` is empty when escalation is off; ``department`` is the town department that hears of a
    village's overdue items, ``departments`` a department per finding kind.
    """

    after_days: tuple[int, ...] = ()
    department: str | None = None
    departments: dict[str, str] = field(default_factory=dict)

    def department_for(self, kind: str) -> str | None:
        """The department that hears of an overdue finding of ``kind``."""
        return self.departments.get(kind, self.department)


@dataclass(frozen=True)
class DispatchOptions:
    """``[dispatch]``, typed.

    Attributes
    ----------
    channels
        Channels by name.
    default
        The channel of an owner with no route of their own (None: such owners are reported, not sent to).
    command_center
        The channel of the command center's digest and of the last escalation level (default ``default``).
    owners
        Per-owner routes (the owner as the task lists name them; a department name works the same way).
    base_url
        Where ``maps/`` and ``reports/`` are served; links are left out without it.
    max_items
        Items listed per message before "and N more".
    remind_days_before
        Remind an owner of an open item this many days before its deadline (each number once).
    retry, escalation
        See :class:`Retry`, :class:`Escalation`.
    """

    channels: dict[str, Channel] = field(default_factory=dict)
    default: str | None = None
    command_center: str | None = None
    owners: dict[str, Route] = field(default_factory=dict)
    base_url: str | None = None
    max_items: int = 10
    remind_days_before: tuple[int, ...] = (1,)
    retry: Retry = field(default_factory=Retry)
    escalation: Escalation = field(default_factory=Escalation)

    @property
    def enabled(self) -> bool:
        """True when at least one channel is configured."""
        return bool(self.channels)

    def route(self, recipient: str) -> Route | None:
        """The route of an owner or department (its own, else the default channel; None: nowhere)."""
        if recipient in self.owners:
            return self.owners[recipient]
        return Route(self.default) if self.default else None

    def center_route(self, center: str) -> Route | None:
        """The route of the command center's digest and escalations."""
        if self.command_center:
            return Route(self.command_center)
        return self.route(center)


def _fail(where: str, value: Any, fix: str, path: Any) -> ConfigError:
    return ConfigError(f"{where} cannot be {value!r}.", path=path, fix=fix)


def _text(table: Mapping[str, Any], key: str, where: str, path: Any, *, example: str) -> str | None:
    value = table.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"{where} {key}", value, f"write {key} = {example}", path)
    return value.strip()


def _env_name(table: Mapping[str, Any], key: str, where: str, path: Any) -> str | None:
    value = _text(table, key, where, path, example='"GISGRID_..."')
    if value is not None and not _ENV_NAME.match(value):
        # a value that is no variable name is most likely the secret itself, pasted in: never echo it
        msg = f"{where} {key} must name an environment variable (letters, digits, _), and it does not."
        raise ConfigError(msg, path=path, fix=f'put the secret in an environment variable and write {key} = '
                          '"GISGRID_..." (its name), never the secret itself')
    return value


def _number(table: Mapping[str, Any], key: str, where: str, path: Any, default: float, *, integer: bool = False,
            minimum: float = 0.0) -> Any:
    value = table.get(key, default)
    ok = (not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(value)
          and value >= minimum and (not integer or float(value).is_integer()))
    if not ok:
        kind = "a whole number" if integer else "a number"
        raise _fail(f"{where} {key}", value, f"write {key} = {default} ({kind} >= {minimum:g})", path)
    return int(value) if integer else float(value)


def _addresses(value: Any, where: str, path: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(a, str) and _EMAIL.match(a.strip()) for a in items):
        raise _fail(where, value, 'write to = ["name@example.cn"]', path)
    return tuple(a.strip() for a in items)


def _channel(name: str, table: Any, path: Any) -> Channel:
    where = f"[dispatch.channels.{name}]"
    if not isinstance(table, Mapping):
        raise _fail(where, table, 'write it as a table with kind = "wecom" (or dingtalk, email, webhook)', path)
    kind = table.get("kind")
    if kind not in CHANNEL_KINDS:
        raise _fail(f"{where} kind", kind, f"use one of {list(CHANNEL_KINDS)}", path)
    unknown_keys(table, _CHANNEL_KEYS[kind], where=where, path=path)
    common: dict[str, Any] = {
        "rate_per_minute": _number(table, "rate_per_minute", where, path, RATE_PER_MINUTE[kind], integer=True,
                                   minimum=1),
        "rate_window_s": _number(table, "rate_window_s", where, path, 60.0, minimum=0.001),
        "max_bytes": _number(table, "max_bytes", where, path, MAX_BYTES[kind], integer=True, minimum=512),
        "timeout_s": _number(table, "timeout_s", where, path, 10.0, minimum=0.001),
    }
    if kind == "wecom" and common["max_bytes"] > MAX_BYTES["wecom"]:
        msg = f"{where} max_bytes = {common['max_bytes']} is above WeCom's limit of 4096 bytes of markdown content."
        raise ConfigError(msg, path=path, fix="leave max_bytes out (4096) or make it smaller")
    if kind in ("wecom", "dingtalk"):
        url_env = _env_name(table, "url_env", where, path)
        if url_env is None:
            msg = f"{where} has no url_env: the robot's webhook address (it holds the robot's key) comes from an " \
                  "environment variable."
            raise ConfigError(msg, path=path, fix='write url_env = "GISGRID_WECOM_URL" and export that variable')
        return Channel(name=name, kind=kind, url_env=url_env, secret_env=_env_name(table, "secret_env", where, path),
                       **common)
    if kind == "webhook":
        url = _text(table, "url", where, path, example='"https://platform.example.cn/api/gisgrid"')
        url_env = _env_name(table, "url_env", where, path)
        if (url is None) == (url_env is None):
            msg = f"{where} needs exactly one of url and url_env."
            raise ConfigError(msg, path=path, fix='write url = "https://..." or url_env = "GISGRID_HOOK_URL"')
        if url is not None and not url.lower().startswith(("http://", "https://")):
            raise _fail(f"{where} url", url, 'write url = "https://..."', path)
        return Channel(name=name, kind=kind, url=url, url_env=url_env,
                       token_env=_env_name(table, "token_env", where, path), **common)
    host = _text(table, "host", where, path, example='"smtp.example.cn"')
    sender = _text(table, "sender", where, path, example='"gisgrid@example.cn"')
    if host is None or sender is None or not _EMAIL.match(sender):
        msg = f"{where} needs host and a sender address."
        raise ConfigError(msg, path=path, fix='write host = "smtp.example.cn" and sender = "gisgrid@example.cn"')
    starttls = table.get("starttls", True)
    if not isinstance(starttls, bool):
        raise _fail(f"{where} starttls", starttls, "write starttls = true", path)
    user_env = _env_name(table, "username_env", where, path)
    pass_env = _env_name(table, "password_env", where, path)
    if (user_env is None) != (pass_env is None):
        msg = f"{where} needs both username_env and password_env, or neither."
        raise ConfigError(msg, path=path, fix="name both environment variables (or none for an open relay)")
    if user_env and not starttls:
        msg = f"{where} would send a password without encryption (starttls = false)."
        raise ConfigError(msg, path=path, fix="keep starttls = true when the server needs a login")
    ca_file = _text(table, "ca_file", where, path, example='"/etc/ssl/town-ca.pem"')
    return Channel(name=name, kind=kind, host=host,
                   port=_number(table, "port", where, path, 587, integer=True, minimum=1),
                   sender=sender, to=_addresses(table.get("to", []), f"{where} to", path),
                   username_env=user_env, password_env=pass_env, starttls=starttls, ca_file=ca_file, **common)


def _route(owner: str, value: Any, channels: Mapping[str, Channel], path: Any) -> Route:
    where = f"[dispatch.owners] {owner!r}"
    to: tuple[str, ...] = ()
    if isinstance(value, str):
        name: Any = value
    elif isinstance(value, Mapping):
        unknown_keys(value, ("channel", "to"), where=where, path=path)
        name = value.get("channel")
        to = _addresses(value.get("to", []), f"{where} to", path)
    else:
        raise _fail(where, value, 'write "owner" = "channel" or "owner" = { channel = "mail", to = "a@b.cn" }', path)
    _known_channel(name, channels, where, path)
    if to and channels[str(name)].kind != "email":
        msg = f"{where} gives addresses, but channel {name!r} is not e-mail."
        raise ConfigError(msg, path=path, fix="give to only with an email channel")
    return Route(str(name), to)


def _known_channel(name: Any, channels: Mapping[str, Channel], where: str, path: Any) -> None:
    if name not in channels:
        from gisgrid.vocab import nearest

        close = nearest(str(name), list(channels)) if channels else None
        hint = f"did you mean {close!r}? " if close else ""
        msg = f"{where} names the channel {name!r}, which [dispatch.channels] does not define."
        raise ConfigError(msg, path=path, fix=f"{hint}use one of {sorted(channels)}")


def parse_dispatch(table: Mapping[str, Any] | None, *, path: Any = None) -> DispatchOptions:
    """Check and type the ``[dispatch]`` table.

    Parameters
    ----------
    table
        The section as written (None or empty: dispatch is off).
    path
        The config file, for the error messages.

    Returns
    -------
    DispatchOptions

    Raises
    ------
    ConfigError
        The first bad key or value, with the fix (a secret is never shown).
    """
    if not table:
        return DispatchOptions()
    if not isinstance(table, Mapping):
        raise _fail("[dispatch]", table, "write it as a [dispatch] section", path)
    unknown_keys(table, _TOP_KEYS, where="[dispatch]", path=path)
    raw = table.get("channels") or {}
    if not isinstance(raw, Mapping) or not raw:
        msg = "[dispatch] has no channels."
        raise ConfigError(msg, path=path, fix='add [dispatch.channels.town] with kind = "wecom" and url_env = "..."')
    channels = {str(n): _channel(str(n), t, path) for n, t in raw.items()}
    for key in ("default", "command_center"):
        if table.get(key) is not None:
            _known_channel(table[key], channels, f"[dispatch] {key}", path)
    owners_in = table.get("owners") or {}
    if not isinstance(owners_in, Mapping):
        raise _fail("[dispatch] owners", owners_in, 'write owners = { "owner name" = "channel" }', path)
    owners = {str(o).strip(): _route(str(o), v, channels, path) for o, v in owners_in.items()}
    for name, ch in channels.items():
        routed = [r for r in owners.values() if r.channel == name]
        if ch.kind == "email" and not ch.to and any(not r.to for r in routed):
            msg = f"[dispatch.channels.{name}] has no to addresses, and an owner routed to it gives none either."
            raise ConfigError(msg, path=path, fix="add to = [...] to the channel or to each owner's route")
        if ch.kind == "email" and not ch.to and name in (table.get("default"), table.get("command_center")):
            msg = f"[dispatch.channels.{name}] is a default channel but has no to addresses."
            raise ConfigError(msg, path=path, fix='add to = ["..."] to the channel')
    base_url = _text(table, "base_url", "[dispatch]", path, example='"https://gis.example.cn/gisgrid"')
    if base_url is not None and not base_url.lower().startswith(("http://", "https://")):
        raise _fail("[dispatch] base_url", base_url, 'write base_url = "https://gis.example.cn/gisgrid"', path)
    remind = table.get("remind_days_before", [1])
    if isinstance(remind, int) and not isinstance(remind, bool):
        remind = [remind]
    if not isinstance(remind, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                               for d in remind):
        raise _fail("[dispatch] remind_days_before", remind, "write remind_days_before = [1] (or [] for none)", path)
    return DispatchOptions(
        channels=channels, default=table.get("default"), command_center=table.get("command_center"), owners=owners,
        base_url=base_url.rstrip("/") if base_url else None,
        max_items=_number(table, "max_items", "[dispatch]", path, 10, integer=True, minimum=1),
        remind_days_before=tuple(sorted(set(remind))),
        retry=_retry(table.get("retry"), path), escalation=_escalation(table.get("escalation"), path))


def _retry(table: Any, path: Any) -> Retry:
    if table is None:
        return Retry()
    if not isinstance(table, Mapping):
        raise _fail("[dispatch.retry]", table, "write it as a table", path)
    unknown_keys(table, _RETRY_KEYS, where="[dispatch.retry]", path=path)
    d = Retry()
    return Retry(attempts=_number(table, "attempts", "[dispatch.retry]", path, d.attempts, integer=True, minimum=1),
                 backoff_s=_number(table, "backoff_s", "[dispatch.retry]", path, d.backoff_s),
                 max_backoff_s=_number(table, "max_backoff_s", "[dispatch.retry]", path, d.max_backoff_s),
                 max_total_s=_number(table, "max_total_s", "[dispatch.retry]", path, d.max_total_s))


def _escalation(table: Any, path: Any) -> Escalation:
    if table is None:
        return Escalation()
    where = "[dispatch.escalation]"
    if not isinstance(table, Mapping):
        raise _fail(where, table, "write it as a table", path)
    unknown_keys(table, _ESCALATION_KEYS, where=where, path=path)
    days = table.get("after_days", [])
    if isinstance(days, int) and not isinstance(days, bool):
        days = [days]
    ok = (isinstance(days, list) and len(days) <= 2 and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                            for d in days) and days == sorted(days))
    if not ok:
        raise _fail(f"{where} after_days", days, "write after_days = [3, 7]: days overdue before the department, "
                    "then the command center, hear of it", path)
    department = _text(table, "department", where, path, example='"镇网格化服务管理中心"')
    departments = table.get("departments") or {}
    if not isinstance(departments, Mapping) or not all(isinstance(v, str) and v.strip()
                                                       for v in departments.values()):
        raise _fail(f"{where} departments", departments, 'write departments = { river_unassigned = "镇河长办" }',
                    path)
    if len(days) == 2 and department is None and not departments:
        msg = f"{where} has two levels but names no department for the first."
        raise ConfigError(msg, path=path, fix='add department = "..." (the town department of level 1)')
    return Escalation(after_days=tuple(days), department=department,
                      departments={str(k): str(v).strip() for k, v in departments.items()})


def read_secrets(channel: Channel, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The secrets of a channel from the environment, by role (``url``, ``secret``, ``token``, ...).

    Raises
    ------
    ConfigError
        A variable the config names is not set (the message names the variable, never a value).
    """
    env = os.environ if environ is None else environ
    out: dict[str, str] = {}
    for role, name in (("url", channel.url_env), ("secret", channel.secret_env), ("token", channel.token_env),
                       ("username", channel.username_env), ("password", channel.password_env)):
        if not name:
            continue
        value = env.get(name, "")
        if not value.strip():
            msg = f"the environment variable {name} (the {role} of channel {channel.name!r}) is not set."
            raise ConfigError(msg, fix=f"export {name}=... in the environment of the scheduled job")
        out[role] = value.strip()
        if role == "url" and not out[role].lower().startswith(("http://", "https://")):
            # never echo the value: it is the robot's key
            msg = f"the environment variable {name} (the address of channel {channel.name!r}) is not an http(s) URL."
            raise ConfigError(msg, fix=f"export {name}=https://... (the full webhook address)")
    if channel.url and "url" not in out:
        out["url"] = channel.url
    return out
