r"""Sending: WeCom and DingTalk group robots, SMTP with STARTTLS, a generic JSON webhook.

The request shapes are the ones the platforms document:

- WeCom (企业微信) group robot: ``POST`` the webhook address (``.../cgi-bin/webhook/send?key=KEY``) with
  ``Content-Type: application/json`` and ``{"msgtype": "markdown", "markdown": {"content": TEXT}}``;
  ``content`` is at most 4,096 bytes of UTF-8; the answer is ``{"errcode": 0, "errmsg": "ok"}``; 20
  messages a minute per robot (errcode 45009 when exceeded).
- DingTalk (钉钉) custom robot: ``POST`` ``.../robot/send?access_token=TOKEN`` with
  ``{"msgtype": "markdown", "markdown": {"title": TITLE, "text": TEXT}}``; in signed mode (加签) the query
  also carries ``timestamp`` (milliseconds) and ``sign`` = Base64(HMAC-SHA256(key=secret,
  msg=f"{timestamp}\n{secret}")), URL-encoded; errcode 0 on success; 20 a minute (errcode 130101 or
  410100 when exceeded).
- E-mail: SMTP, ``STARTTLS`` before any login (certificate and host name verified), a ``text/plain``
  UTF-8 body.
- Webhook: ``POST`` the message's JSON payload (:meth:`Message.payload`), with
  ``Authorization: Bearer TOKEN`` when ``token_env`` is set; any 2xx is success.

:class:`Sender` adds the rate limit (at most ``rate_per_minute`` requests in any ``rate_window_s``
seconds, per channel: it sleeps, never spins) and the retries (``attempts`` in all, doubling backoff
from ``backoff_s`` up to ``max_backoff_s``, never past ``max_total_s``; a server's ``Retry-After`` is
honoured). Connection failures, timeouts, HTTP 5xx, 429 and the robots' rate-limit codes are retried;
other answers (a wrong key, a bad request) fail at once. No error text carries a secret: every secret
of the channel, and the whole address, is replaced by ``***`` first.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import hmac
import http.client
import json
import logging
import smtplib
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from typing import Any

from gisgrid.dispatch.options import Channel, Retry

__all__ = ["DeliveryError", "Sender", "dingtalk_sign", "redact"]

logger = logging.getLogger(__name__)

#: Robot error codes that mean "too many messages": wait and try again.
RATE_LIMIT_CODES = {45009, 130101, 410100}
#: Robot error codes that mean "busy, try again".
BUSY_CODES = {-1}
_USER_AGENT = "gisgrid-dispatch"


class DeliveryError(Exception):
    """A message did not go out. ``retry`` says whether trying again may help; ``wait_s`` what the server asked."""

    def __init__(self, text: str, *, retry: bool, wait_s: float | None = None) -> None:
        super().__init__(text)
        self.retry = retry
        self.wait_s = wait_s


def redact(text: str, secrets: Mapping[str, str]) -> str:
    """``text`` with every secret (and each query value of a secret address) replaced by ``***``."""
    values = [v for v in secrets.values() if v]
    for v in list(values):
        parts = urllib.parse.urlsplit(v) if "://" in v else None
        if parts is not None:
            values += [q for _, q in urllib.parse.parse_qsl(parts.query) if len(q) >= 4]
            values += [urllib.parse.quote(v, safe=""), urllib.parse.quote_plus(v)]
    for v in sorted(set(values), key=len, reverse=True):
        text = text.replace(v, "***")
    return text


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's signature of a signed (加签) robot request, before URL-encoding."""
    mac = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(), hashlib.sha256).digest()
    return base64.b64encode(mac).decode("ascii")


def _with_query(url: str, extra: Mapping[str, str]) -> str:
    parts = urllib.parse.urlsplit(url)
    query = parts.query + ("&" if parts.query else "") + urllib.parse.urlencode(extra)
    return urllib.parse.urlunsplit(parts._replace(query=query))


def _retry_after(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _post_json(url: str, body: Mapping[str, Any], *, timeout: float, headers: Mapping[str, str] | None = None,
               robot: bool) -> None:
    data = json.dumps(body, ensure_ascii=False).encode("utf-8")
    try:
        req = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/json; charset=utf-8", "User-Agent": _USER_AGENT, **(headers or {})})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            raw = resp.read(65536)
    except urllib.error.HTTPError as exc:
        code = exc.code
        wait = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
        exc.close()
        raise DeliveryError(f"HTTP {code}", retry=code == 429 or code >= 500 or code == 408, wait_s=wait) from None
    except (ValueError, http.client.InvalidURL):  # an address urllib cannot use; its text holds the address
        raise DeliveryError("the address is not a usable URL", retry=False) from None
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, a broken answer
        reason = getattr(exc, "reason", exc)
        raise DeliveryError(f"no answer ({type(reason).__name__}: {reason})", retry=True) from None
    if not robot:
        return
    try:
        answer = json.loads(raw.decode("utf-8"))
        code = int(answer.get("errcode", -999))
    except (ValueError, AttributeError, TypeError):
        raise DeliveryError("the robot's answer is not the JSON it documents", retry=True) from None
    if code == 0:
        return
    text = f"errcode {code}: {str(answer.get('errmsg', ''))[:200]}"
    if code in RATE_LIMIT_CODES:
        raise DeliveryError(f"rate limited ({text})", retry=True)
    raise DeliveryError(text, retry=code in BUSY_CODES)


def _send_email(channel: Channel, secrets: Mapping[str, str], *, title: str, body: str, to: tuple[str, ...]) -> None:
    msg = EmailMessage()
    msg["Subject"] = title
    msg["From"] = str(channel.sender)
    msg["To"] = ", ".join(to)
    msg["Date"] = formatdate(localtime=True)
    msg["Message-ID"] = make_msgid(domain=str(channel.sender).rsplit("@", 1)[-1])
    msg.set_content(body, charset="utf-8")
    try:
        with smtplib.SMTP(str(channel.host), channel.port, timeout=channel.timeout_s) as smtp:
            smtp.ehlo()
            if channel.starttls:
                context = ssl.create_default_context(cafile=channel.ca_file)
                smtp.starttls(context=context)
                smtp.ehlo()
            if "username" in secrets:
                smtp.login(secrets["username"], secrets["password"])
            smtp.send_message(msg)
    except smtplib.SMTPResponseException as exc:
        raise DeliveryError(f"SMTP {exc.smtp_code}", retry=400 <= exc.smtp_code < 500) from None
    except smtplib.SMTPRecipientsRefused:
        raise DeliveryError("SMTP refused every recipient", retry=False) from None
    except smtplib.SMTPNotSupportedError:
        raise DeliveryError("the SMTP server does not offer STARTTLS", retry=False) from None
    except ssl.SSLError as exc:
        raise DeliveryError(f"TLS failed ({exc.reason or type(exc).__name__})", retry=False) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryError(f"SMTP connection failed ({type(exc).__name__})", retry=True) from None


def send_once(channel: Channel, secrets: Mapping[str, str], *, title: str, body: str, payload: Mapping[str, Any],
              to: tuple[str, ...] = ()) -> None:
    """One request, no retry. Raises :class:`DeliveryError`."""
    if channel.kind == "wecom":
        _post_json(secrets["url"], {"msgtype": "markdown", "markdown": {"content": body}},
                   timeout=channel.timeout_s, robot=True)
    elif channel.kind == "dingtalk":
        url = secrets["url"]
        if "secret" in secrets:
            stamp = int(time.time() * 1000)
            url = _with_query(url, {"timestamp": str(stamp), "sign": dingtalk_sign(secrets["secret"], stamp)})
        _post_json(url, {"msgtype": "markdown", "markdown": {"title": title, "text": body}},
                   timeout=channel.timeout_s, robot=True)
    elif channel.kind == "webhook":
        headers = {"Authorization": f"Bearer {secrets['token']}"} if "token" in secrets else {}
        _post_json(secrets["url"], payload, timeout=channel.timeout_s, headers=headers, robot=False)
    else:
        _send_email(channel, secrets, title=title, body=body, to=to or channel.to)


@dataclass
class Outcome:
    """What sending one message came to: ``ok``, the requests made, the last error (secret-free)."""

    ok: bool
    attempts: int
    error: str = ""


class Sender:
    """Sends over one channel with its rate limit and the retries.

    Parameters
    ----------
    channel, secrets
        The channel and its secrets (:func:`~gisgrid.dispatch.options.read_secrets`).
    retry
        Attempts and backoff.
    sleep, clock
        ``time.sleep`` and ``time.monotonic`` (the tests measure real time; they pass these only to count).
    """

    def __init__(self, channel: Channel, secrets: Mapping[str, str], retry: Retry, *,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self.channel = channel
        self.secrets = dict(secrets)
        self.retry = retry
        self.sleep = sleep
        self.clock = clock
        self.recent: collections.deque[float] = collections.deque()
        self.requests = 0

    def _wait_for_slot(self) -> None:
        window, limit = self.channel.rate_window_s, self.channel.rate_per_minute
        while True:
            now = self.clock()
            while self.recent and now - self.recent[0] >= window:
                self.recent.popleft()
            if len(self.recent) < limit:
                self.recent.append(now)
                return
            pause = window - (now - self.recent[0])
            logger.info("channel %s: %d requests in %.0f s, waiting %.1f s (rate limit)", self.channel.name,
                        limit, window, pause)
            self.sleep(max(pause, 0.001))

    def send(self, *, title: str, body: str, payload: Mapping[str, Any], to: tuple[str, ...] = ()) -> Outcome:
        """Send one message: rate-limited, retried with backoff, bounded in attempts and in time."""
        start = self.clock()
        delay = self.retry.backoff_s
        attempts = 0
        while True:
            self._wait_for_slot()
            attempts += 1
            self.requests += 1
            try:
                send_once(self.channel, self.secrets, title=title, body=body, payload=payload, to=to)
                return Outcome(True, attempts)
            except DeliveryError as exc:
                error = redact(str(exc), self.secrets)
                wait = max(delay, exc.wait_s or 0.0)
                spent = self.clock() - start
                if not exc.retry or attempts >= self.retry.attempts or spent + wait > self.retry.max_total_s:
                    return Outcome(False, attempts, error)
                logger.info("channel %s: attempt %d failed (%s); again in %.1f s", self.channel.name, attempts,
                            error, wait)
                self.sleep(wait)
                delay = min(delay * 2, self.retry.max_backoff_s)
