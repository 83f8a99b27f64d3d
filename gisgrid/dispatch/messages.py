"""What is sent, to whom: pure functions from a run's lifecycle table to messages (no network, no files).

One message per recipient and run:

- **owner**: the owner's new, overdue and back-again (反弹) items, open items never told before, and the
  reminders due (``remind_days_before`` the deadline); most severe first; kind, place, measure, deadline;
  cut with "and N more" plus the links when longer than the channel allows;
- **escalation** (逐级上报): items overdue for ``after_days`` days, to the town department, then to the
  command center, naming who was responsible and since when;
- **digest**: the command center's veto and overdue items across all owners.

Every item carries *tags*: what it tells the recipient (``new:2026-11-01``, ``overdue:2026-11-01``,
``reminder:2026-11-08:1``, ``escalation1:2026-11-01``: the reason and the stretch it belongs to). An item
whose tags were all sent to that recipient before is not sent again: a status that has not changed is
never repeated, except as a reminder or an escalation.

Text from the data (owners, ids, kinds) is escaped for Markdown (:func:`md_escape`): WeCom and DingTalk
render it, and a name must not become a link, a heading or bold text.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from gisgrid.dispatch.options import DispatchOptions, Route
from gisgrid.findings import OPEN_STATUSES, SEVERITY_RANK, as_date, show_ids, split_owner
from gisgrid.io.atomic import cut_utf8
from gisgrid.vocab import KIND_ZH, SEVERITY_LABELS, STATUS_LABELS, is_missing

__all__ = ["Item", "Message", "md_escape", "plain", "plan_messages"]

#: Reasons an item is in a message, in the order a message lists them (after severity).
REASONS: tuple[str, ...] = ("overdue", "reopened", "new", "open", "reminder", "escalation", "veto")
REASON_LABELS: dict[str, str] = {
    **STATUS_LABELS, "open": "待办 open", "reminder": "临期提醒 due soon", "escalation": "逐级上报 escalated",
    "veto": "一票否决 veto",
}
#: Longest piece of data text shown (a name of 10,000 characters must not crowd out the items).
_MAX_FIELD_BYTES = 160
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Markdown and HTML syntax characters become their full-width twins: they read the same to a person and mean
# nothing to a renderer, whatever escaping rules (if any) WeCom's and DingTalk's renderers follow.
_MD_MAP = str.maketrans({"\\": "＼", "`": "｀", "*": "＊", "[": "［", "]": "］", "<": "＜", ">": "＞", "#": "＃",
                         "~": "～", "|": "｜", "!": "！", "&": "＆", "$": "＄"})
_LONE_UNDERSCORE = re.compile(r"(?<![0-9A-Za-z])_|_(?![0-9A-Za-z])")  # area_gap stays; _emphasis_ does not
_AUTOLINK = re.compile(r"(?i)(://|www\.)")


def plain(value: Any, *, max_bytes: int = _MAX_FIELD_BYTES) -> str:
    """Data as one line of text: control characters and line breaks become spaces; cut to ``max_bytes``."""
    if is_missing(value):
        return ""
    text = " ".join(_CONTROL.sub(" ", str(value)).split())
    if len(text.encode("utf-8")) > max_bytes:
        text = cut_utf8(text, max_bytes - 3) + "…"
    return text


def md_escape(value: Any, *, max_bytes: int = _MAX_FIELD_BYTES) -> str:
    """Data as inert Markdown: one line, no syntax characters, no bare links (``://`` and ``www.`` broken)."""
    text = plain(value, max_bytes=max_bytes).translate(_MD_MAP)
    text = _LONE_UNDERSCORE.sub("＿", text)
    return _AUTOLINK.sub(lambda m: m.group(1).replace("/", "／").replace(".", "．"), text)


@dataclass(frozen=True)
class Item:
    """One finding as a message lists it."""

    finding_id: str
    reason: str
    tags: tuple[str, ...]
    kind: str
    severity: str
    status: str
    owner: str
    place: str
    measure: str
    deadline: dt.date | None
    opened_on: dt.date | None
    days_overdue: int
    level: int = 0

    def sort_key(self) -> tuple[Any, ...]:
        """Most severe first; then the reason, the longest overdue, the nearest deadline."""
        return (SEVERITY_RANK.get(self.severity, len(SEVERITY_RANK)), REASONS.index(self.reason), -self.days_overdue,
                self.deadline or dt.date.max, self.finding_id)

    def as_dict(self) -> dict[str, Any]:
        """The item as JSON-ready data (the generic webhook's ``items``)."""
        return {"finding_id": self.finding_id, "reason": self.reason, "kind": self.kind, "severity": self.severity,
                "status": self.status, "owner": self.owner, "place": self.place, "measure": self.measure,
                "deadline": self.deadline.isoformat() if self.deadline else None,
                "opened_on": self.opened_on.isoformat() if self.opened_on else None,
                "days_overdue": self.days_overdue, "level": self.level}


@dataclass(frozen=True)
class Message:
    """One message to one recipient over one channel, rendered exactly as it will be sent.

    Attributes
    ----------
    kind
        ``owner``, ``escalation`` or ``digest``.
    title
        Subject (e-mail) or title (DingTalk).
    body
        Markdown for WeCom and DingTalk, plain text for e-mail and the webhook's ``text``.
    items
        Every item the message tells (listed, or counted in "and N more"); they are marked sent with it.
    listed
        How many of them are listed one by one.
    """

    as_of: dt.date
    kind: str
    recipient: str
    channel: str
    channel_kind: str
    title: str
    body: str
    items: tuple[Item, ...]
    listed: int
    to: tuple[str, ...] = ()
    links: tuple[tuple[str, str], ...] = ()
    counts: dict[str, int] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The JSON the generic webhook receives (and what the outbox keeps besides the body)."""
        return {"source": "gisgrid", "as_of": self.as_of.isoformat(), "kind": self.kind,
                "recipient": self.recipient, "title": self.title, "text": self.body,
                "items": [i.as_dict() for i in self.items[: self.listed]], "more": len(self.items) - self.listed,
                "counts": self.counts, "links": [{"label": a, "url": b} for a, b in self.links]}

    def notified(self) -> list[tuple[str, str, str]]:
        """(recipient, finding_id, tag) of everything this message tells."""
        return [(self.recipient, i.finding_id, t) for i in self.items for t in i.tags]


# --------------------------------------------------------------------------- items
def _measure(value: Any, unit: Any) -> str:
    try:
        num = float(value)
    except (TypeError, ValueError):
        return ""
    if not math.isfinite(num):
        return ""
    u = "" if is_missing(unit) else str(unit)
    shown = f"{num:,.0f}" if abs(num) >= 10 or num.is_integer() else f"{num:,.1f}"
    return f"{shown} {u}".strip()


def _place(village: Any, grid: Any) -> str:
    parts = []
    if (v := show_ids(village, "、")) is not None:
        parts.append(f"村居 {v}")
    if (g := show_ids(grid, "、")) is not None:
        parts.append(f"网格 {g}")
    return " ".join(parts)


def _records(life: pd.DataFrame) -> list[dict[str, Any]]:
    cols = ["finding_id", "kind", "severity", "status", "owner", "village_id", "grid_id", "measure", "unit",
            "deadline", "opened_on", "days_overdue"]
    frame = pd.DataFrame(life)
    for c in cols:
        if c not in frame.columns:
            frame[c] = None
    frame = frame[frame["status"].isin(OPEN_STATUSES)]
    return [dict(zip(cols, row, strict=True)) for row in frame[cols].astype(object).itertuples(index=False)]


def _item(rec: Mapping[str, Any], reason: str, tags: Iterable[str], *, level: int = 0) -> Item:
    days = rec.get("days_overdue")
    days = 0 if days is None or is_missing(days) else int(days)
    return Item(finding_id=str(rec["finding_id"]), reason=reason, tags=tuple(tags), kind=str(rec["kind"]),
                severity=str(rec["severity"]), status=str(rec["status"]), owner=plain(rec.get("owner")),
                place=_place(rec.get("village_id"), rec.get("grid_id")),
                measure=_measure(rec.get("measure"), rec.get("unit")), deadline=as_date(rec.get("deadline")),
                opened_on=as_date(rec.get("opened_on")), days_overdue=days,
                level=level)


def _owner_items(rec: Mapping[str, Any], as_of: dt.date, who: str, remind: tuple[int, ...],
                 sent: set[tuple[str, str, str]], told: set[tuple[str, str, str]]) -> Item | None:
    """The item ``who`` should hear about today, with every tag it carries; None when nothing is new to them."""
    fid, status = str(rec["finding_id"]), str(rec["status"])
    opened = as_date(rec.get("opened_on"))
    stretch = opened.isoformat() if opened else "-"
    tags: list[str] = []
    reason = None
    if status in ("new", "reopened", "overdue"):
        tag = f"{status}:{stretch}"
        if (who, fid, tag) not in sent:
            reason, tags = status, [tag]
    elif (who, fid, stretch) not in told:  # persisting, never told in this stretch (a route added later)
        reason, tags = "open", [f"open:{stretch}"]
    deadline = as_date(rec.get("deadline"))
    if deadline is not None and remind and status != "overdue":
        left = (deadline - as_of).days
        due = [r for r in remind if 0 <= left <= r]
        if due:
            tag = f"reminder:{deadline.isoformat()}:{min(due)}"
            if (who, fid, tag) not in sent:
                tags.append(tag)
                reason = reason or "reminder"
    return _item(rec, reason, tags) if reason else None


def plan_messages(
    life: pd.DataFrame,
    *,
    as_of: dt.date,
    options: DispatchOptions,
    sent: set[tuple[str, str, str]],
    center: str,
    town: str = "",
    links: Callable[[str, str], list[tuple[str, str]]] | None = None,
) -> tuple[list[Message], list[str]]:
    """Every message of a run, rendered for its channel.

    Parameters
    ----------
    life
        The run's lifecycle table (:meth:`gisgrid.history.History.record` or ``snapshot``); only open
        findings count.
    as_of
        The run date.
    options
        The ``[dispatch]`` options.
    sent
        ``(recipient, finding_id, tag)`` already sent (the outbox's record).
    center
        The command center's name (the owner of what nobody else owns).
    town
        The town's name, for the titles.
    links
        ``links(kind, recipient)`` -> ``[(label, url)]``: the owner's map and task list, the report.

    Returns
    -------
    messages : list of Message
        Owners in name order, then escalations, then the digest.
    unrouted : list of str
        Recipients with something to hear and no channel (no route and no default).
    """
    records = _records(life)
    told = {(r, f, t.split(":", 1)[1]) for r, f, t in sent if t.split(":", 1)[0] in ("new", "reopened", "overdue",
                                                                                       "open")}
    link_of = links or (lambda kind, who: [])
    out: list[Message] = []
    unrouted: list[str] = []

    def emit(kind: str, who: str, route: Route | None, items: list[Item], counts: dict[str, int]) -> None:
        if not items:
            return
        if route is None:
            unrouted.append(who)
            return
        channel = options.channels[route.channel]
        out.append(render(kind=kind, recipient=who, items=items, counts=counts, as_of=as_of, town=town,
                          channel=channel.name, channel_kind=channel.kind, max_bytes=channel.max_bytes,
                          max_items=options.max_items, links=link_of(kind, who), to=route.to or channel.to))

    by_owner: dict[str, list[dict[str, Any]]] = {}
    for rec in records:
        for who in split_owner(rec.get("owner")) or [center]:
            by_owner.setdefault(who, []).append(rec)
    for who in sorted(by_owner):
        items = [it for rec in by_owner[who]
                 if (it := _owner_items(rec, as_of, who, options.remind_days_before, sent, told)) is not None]
        route = options.center_route(center) if who == center else options.route(who)
        emit("owner", who, route, items, {"open": len(by_owner[who])})

    esc = options.escalation
    levels: dict[str, list[Item]] = {}
    for rec in records:
        if rec["status"] != "overdue":
            continue
        late = 0 if is_missing(rec.get("days_overdue")) else int(rec["days_overdue"] or 0)
        opened = as_date(rec.get("opened_on"))
        for level, after in enumerate(esc.after_days, start=1):
            if late < after:
                continue
            last = level == len(esc.after_days)
            dept = esc.department_for(str(rec["kind"]))
            heard_by = center if last and (len(esc.after_days) == 2 or dept is None) else dept
            if heard_by is None:
                continue
            tag = f"escalation{level}:{opened.isoformat() if opened else '-'}"
            if (heard_by, str(rec["finding_id"]), tag) not in sent:
                levels.setdefault(heard_by, []).append(_item(rec, "escalation", [tag], level=level))
    for who in sorted(levels, key=lambda w: (w == center, w)):
        route = options.center_route(center) if who == center else options.route(who)
        emit("escalation", who, route, levels[who], {})

    digest: list[Item] = []
    for rec in records:
        opened = as_date(rec.get("opened_on"))
        stretch = opened.isoformat() if opened else "-"
        reason = "overdue" if rec["status"] == "overdue" else "veto" if rec["severity"] == "veto" else None
        if reason and (center, str(rec["finding_id"]), f"digest-{reason}:{stretch}") not in sent:
            digest.append(_item(rec, reason, [f"digest-{reason}:{stretch}"]))
    totals = {"veto": sum(r["severity"] == "veto" for r in records),
              "overdue": sum(r["status"] == "overdue" for r in records), "open": len(records)}
    emit("digest", center, options.center_route(center), digest, totals)
    return out, unrouted


# --------------------------------------------------------------------------- rendering
_HEADINGS = {"owner": "吹哨 · 待办提醒", "escalation": "逐级上报 · escalation", "digest": "指挥中心汇总 · digest"}


def _line(item: Item, n: int, *, md: bool) -> str:
    esc = md_escape if md else plain
    sev = SEVERITY_LABELS.get(item.severity, esc(item.severity))
    kind = f"{KIND_ZH[item.kind]} {item.kind}" if item.kind in KIND_ZH else esc(item.kind)
    reason = STATUS_LABELS.get(item.status, item.status) if item.reason == "veto" else REASON_LABELS[item.reason]
    parts = [f"**{sev}**" if md else sev, reason, esc(kind)]
    if item.place:
        parts.append(esc(item.place))
    if item.measure:
        parts.append(esc(item.measure))
    if item.deadline:
        late = f" (逾期 {item.days_overdue} 天 overdue {item.days_overdue} d)" if item.days_overdue > 0 else ""
        parts.append(f"期限 deadline {item.deadline.isoformat()}{late}")
    if item.reason == "escalation" or (item.reason in ("overdue", "veto") and item.owner):
        since = item.opened_on.isoformat() if item.opened_on else "?"
        parts.append(f"责任人 responsible {esc(item.owner)} 自 since {since}")
        if item.level:
            parts.append(f"第 {item.level} 级 level {item.level}")
    parts.append(f"编号 id {esc(item.finding_id, max_bytes=40)}")
    return f"{n}. " + " · ".join(parts)


def _title(kind: str, recipient: str, as_of: dt.date, town: str, items: list[Item], *, md: bool) -> str:
    esc = md_escape if md else plain
    counts: dict[str, int] = {}
    for it in items:
        counts[it.reason] = counts.get(it.reason, 0) + 1
    what = " ".join(f"{REASON_LABELS.get(r, r).split()[0]} {c}" for r, c in
                    sorted(counts.items(), key=lambda rc: REASONS.index(rc[0])))
    where = f"{esc(town, max_bytes=60)} " if town else ""
    return f"{where}{as_of.isoformat()} {_HEADINGS[kind]}: {esc(recipient, max_bytes=120)} ({what})"


def render(*, kind: str, recipient: str, items: list[Item], counts: dict[str, int], as_of: dt.date, town: str,
           channel: str, channel_kind: str, max_bytes: int, max_items: int, links: list[tuple[str, str]],
           to: tuple[str, ...] = ()) -> Message:
    """One message, cut to ``max_bytes`` (UTF-8) and ``max_items`` lines with "and N more" and the links."""
    md = channel_kind in ("wecom", "dingtalk")
    items = sorted(items, key=Item.sort_key)
    title = _title(kind, recipient, as_of, town, items, md=md)
    head = [f"### {title}" if md else title]
    if kind == "owner" and counts.get("open", 0) > len(items):
        rest = counts["open"] - len(items)
        head.append(f"另有 {rest} 项待办无变化 {rest} other open items unchanged")
    if kind == "digest":
        head.append(f"全镇待办 {counts.get('open', 0)} 项 open · 一票否决 veto {counts.get('veto', 0)} · "
                    f"逾期 overdue {counts.get('overdue', 0)}")
    if kind == "escalation":
        head.append("以下事项逾期未整改, 逐级上报 these items are overdue and escalated to you:")
    link_text = " · ".join(f"[{label}]({url})" if md else f"{label}: {url}" for label, url in links)
    sep = "\n\n" if channel_kind == "dingtalk" else "\n"

    def body(k: int) -> str:
        lines = head + [_line(it, n, md=md) for n, it in enumerate(items[:k], start=1)]
        if k < len(items):
            lines.append(f"…另有 {len(items) - k} 项 and {len(items) - k} more" + (", 见任务清单 see the task list"
                                                                                  if links else ""))
        if link_text:
            lines.append(link_text)
        return sep.join(lines)

    shown = 0
    text = body(0)
    for k in range(1, min(len(items), max_items) + 1):
        cand = body(k)
        if len(cand.encode("utf-8")) > max_bytes:
            break
        shown, text = k, cand
    if len(text.encode("utf-8")) > max_bytes:  # the head alone is too long: a hard cut, never over the limit
        text = cut_utf8(text, max_bytes - 3) + "…"
    return Message(as_of=as_of, kind=kind, recipient=recipient, channel=channel, channel_kind=channel_kind,
                   title=title if md else plain(title, max_bytes=400), body=text, items=tuple(items), listed=shown,
                   to=tuple(to), links=tuple(links), counts=dict(counts))


def to_json(message: Message) -> str:
    """The outbox record of a message (its payload, addresses and tags)."""
    return json.dumps({"payload": message.payload(), "to": list(message.to), "notified": message.notified()},
                      ensure_ascii=False, sort_keys=True)
