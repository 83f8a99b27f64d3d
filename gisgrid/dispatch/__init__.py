"""吹哨: each owner's new, overdue and back-again items to WeCom, DingTalk, e-mail or a webhook, never twice.

- :mod:`~gisgrid.dispatch.options`: the ``[dispatch]`` section, typed; secrets from named environment
  variables;
- :mod:`~gisgrid.dispatch.messages`: who hears what (pure);
- :mod:`~gisgrid.dispatch.outbox`: the outbox tables in the history database (idempotent, resumable);
- :mod:`~gisgrid.dispatch.channels`: the requests, the rate limits and the retries.

:func:`send` plans a run date's messages once (into the outbox) and sends the unsent ones; a crash
between two messages leaves the sent ones recorded, and the next call sends only the rest. See
``docs/dispatch.md``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from gisgrid._errors import ConfigError
from gisgrid.dispatch.channels import DeliveryError, Sender, dingtalk_sign, redact
from gisgrid.dispatch.messages import Message, md_escape, plan_messages
from gisgrid.dispatch.options import CHANNEL_KINDS, DispatchOptions, parse_dispatch, read_secrets
from gisgrid.dispatch.outbox import Outbox, Pending

__all__ = [
    "CHANNEL_KINDS",
    "EXIT_DELIVERY",
    "DeliveryError",
    "DispatchOptions",
    "DispatchResult",
    "Message",
    "dingtalk_sign",
    "md_escape",
    "parse_dispatch",
    "plan_messages",
    "send",
]

logger = logging.getLogger(__name__)

#: Added to the exit code when a channel failed (``gisgrid dispatch`` exits 4; ``run --dispatch`` 4 or 5).
EXIT_DELIVERY = 4


@dataclass
class DispatchResult:
    """What one dispatch did.

    Attributes
    ----------
    as_of
        The run date.
    planned
        Messages added to the outbox by this call (0 when the date was planned before).
    sent
        ``(channel, recipient, kind)`` of the messages sent now.
    failed
        Channel -> its last error (secret-free) for the channels that failed now.
    left
        Messages of the date still unsent (a failed channel's, or all of them in a dry run).
    superseded
        Unsent messages of earlier dates that this date's plan replaced.
    unrouted
        Recipients with something to hear but no channel.
    dry_run
        Nothing was sent or recorded.
    preview
        In a dry run, the messages as they would go out.
    """

    as_of: dt.date
    planned: int = 0
    sent: list[tuple[str, str, str]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    left: int = 0
    unrouted: list[str] = field(default_factory=list)
    dry_run: bool = False
    preview: list[Pending | Message] = field(default_factory=list)
    requests: int = 0
    superseded: int = 0

    @property
    def exit_code(self) -> int:
        """0 everything went out (or a dry run); :data:`EXIT_DELIVERY` when a channel failed."""
        return EXIT_DELIVERY if self.failed else 0

    def one_line(self) -> str:
        """The dispatch part of the run summary."""
        if self.dry_run:
            return f"dispatch {self.as_of.isoformat()}: dry run, {len(self.preview)} message(s) would be sent"
        text = f"dispatch {self.as_of.isoformat()}: sent {len(self.sent)}, left {self.left}"
        if self.failed:
            text += "; FAILED channel(s) " + ", ".join(f"{c} ({e})" for c, e in sorted(self.failed.items()))
        if self.unrouted:
            text += f"; {len(self.unrouted)} recipient(s) have no channel"
        if self.superseded:
            text += f"; {self.superseded} unsent message(s) of earlier dates replaced by these"
        return text

    def describe(self) -> list[str]:
        """Lines for a terminal: what went out, what failed, what is left."""
        lines = [self.one_line()]
        for channel, recipient, kind in self.sent:
            lines.append(f"  sent {kind} to {recipient} via {channel}")
        for channel, error in sorted(self.failed.items()):
            lines.append(f"  channel {channel} failed: {error}; its messages stay in the outbox and go out on the "
                         "next dispatch of this date")
        if self.unrouted:
            shown = ", ".join(self.unrouted[:10]) + (" …" if len(self.unrouted) > 10 else "")
            lines.append(f"  no channel for: {shown} (add them to [dispatch] owners, or set [dispatch] default)")
        return lines


def send(
    life: pd.DataFrame,
    *,
    db_path: str | os.PathLike[str],
    as_of: dt.date,
    options: DispatchOptions,
    run_stamp: str = "",
    center: str,
    town: str = "",
    links: Callable[[str, str], list[tuple[str, str]]] | None = None,
    dry_run: bool = False,
    environ: Mapping[str, str] | None = None,
    before_send: Callable[[int], None] | None = None,
) -> DispatchResult:
    """Plan a run date's messages into the outbox (once) and send every unsent one.

    Parameters
    ----------
    life
        The run's lifecycle table.
    db_path
        The history database that holds the outbox.
    as_of
        The run date.
    options
        ``[dispatch]``, parsed.
    run_stamp
        The history's stamp of that run (a run recorded again is planned again).
    center, town, links
        See :func:`~gisgrid.dispatch.messages.plan_messages`.
    dry_run
        Plan and show, send nothing and record nothing (no secret is read).
    environ
        Where the secrets are (default ``os.environ``).
    before_send
        Called with the 1-based number of each message about to be sent (the crash tests stop there).

    Returns
    -------
    DispatchResult

    Raises
    ------
    ConfigError
        A channel's environment variable is not set (named, never its value).
    """
    result = DispatchResult(as_of=as_of, dry_run=dry_run)
    outbox = Outbox(Path(db_path)) if (not dry_run or Path(db_path).exists()) else None
    sent_before = outbox.sent() if outbox is not None else set()
    planned_for = outbox.plan_stamp(as_of) if outbox is not None else None
    messages: list[Message] = []
    if planned_for != run_stamp:
        messages, result.unrouted = plan_messages(life, as_of=as_of, options=options, sent=sent_before,
                                                  center=center, town=town, links=links)
        for who in result.unrouted:
            logger.warning("dispatch: %s has items to hear about but no channel", who)
    if dry_run:
        replan = planned_for != run_stamp or outbox is None
        preview = list(messages) if replan else list(outbox.unsent(as_of))  # type: ignore[union-attr]
        result.preview = sorted(preview, key=lambda m: m.channel)  # per channel, in send order within each
        result.left = len(result.preview)
        return result
    assert outbox is not None
    if planned_for != run_stamp:
        superseded = outbox.plan(as_of, run_stamp, messages)
        result.planned = 0 if superseded is None else len(messages)
        result.superseded = superseded or 0
        if result.superseded:
            logger.warning("dispatch: %d message(s) of earlier dates never went out; this date's messages carry "
                           "their items that are still open", result.superseded)
    pending = outbox.unsent(as_of)
    needed = {p.channel for p in pending}
    secrets = {name: read_secrets(options.channels[name], environ) for name in sorted(needed)
               if name in options.channels}
    senders = {name: Sender(options.channels[name], s, options.retry) for name, s in secrets.items()}
    for number, message in enumerate(pending, start=1):
        sender = senders.get(message.channel)
        if sender is None:  # the channel left the config since the date was planned
            result.failed.setdefault(message.channel, "the channel is no longer in [dispatch.channels]")
            continue
        if message.channel in result.failed:
            continue  # a channel that keeps failing: the rest of its messages wait for the next dispatch
        if before_send is not None:
            before_send(number)
        outcome = sender.send(title=message.title, body=message.body, payload=message.payload, to=message.to)
        if outcome.ok:
            outbox.mark_sent(message, outcome.attempts)
            result.sent.append((message.channel, message.recipient, message.kind))
            logger.info("dispatch: sent %s to %s via %s", message.kind, message.recipient, message.channel)
        else:
            error = redact(outcome.error, sender.secrets)
            outbox.mark_failed(message, outcome.attempts, error)
            result.failed[message.channel] = f"{error} after {outcome.attempts} attempt(s)"
            logger.error("dispatch: channel %s failed: %s after %d attempt(s)", message.channel, error,
                         outcome.attempts)
    result.requests = sum(s.requests for s in senders.values())
    result.left = sum(n for s, n in outbox.counts(as_of).items() if s in ("pending", "failed"))
    return result


def check_secrets(options: DispatchOptions, environ: Mapping[str, str] | None = None) -> list[str]:
    """The environment variables the channels name that are not set (names only).

    Raises
    ------
    ConfigError
        A variable that is set but unusable (an address that is not an http(s) URL), naming it, not its value.
    """
    env = os.environ if environ is None else environ
    missing = []
    for channel in options.channels.values():
        try:
            read_secrets(channel, env)
        except ConfigError:
            unset = [n for n in channel.secret_names() if not env.get(n, "").strip()]
            if not unset:
                raise
            missing += unset
    return missing


def describe_message(message: Pending | Message) -> str:
    """A message as ``--dry-run`` prints it: channel, recipient, then exactly the body that would be sent."""
    to = f" to {', '.join(message.to)}" if message.to else ""
    return f"--- {message.channel} ({message.channel_kind}) → {message.recipient}{to}: {message.title}\n{message.body}"
