"""吹哨 (issue 19): each owner's news to WeCom, DingTalk, e-mail and a webhook, never twice. No internet.

A loopback HTTP server in this process plays the WeCom robot (``/wecom``), the DingTalk robot (``/ding``)
and a generic webhook (``/hook``): it checks each request against the shape the platform documents
(``msgtype`` ``markdown`` and its fields, ``Content-Type: application/json``, DingTalk's ``timestamp`` and
``sign``, verified here with our own HMAC-SHA256) and can answer errors, slowly, or "too many messages".

The SMTP server is aiosmtpd with ``require_starttls=True`` and a login that it only accepts over TLS, with
a self-signed certificate made here; the client trusts it through ``ca_file`` and verifies the host name.
So an e-mail that arrives proves: STARTTLS was negotiated and the certificate verified, the login was
accepted, the message parsed as UTF-8 text/plain.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import itertools
import json
import logging
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from email import message_from_bytes, policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pandas as pd
import pytest

from gisgrid import pipeline
from gisgrid._errors import ConfigError
from gisgrid.dispatch import parse_dispatch, plan_messages
from gisgrid.findings import split_owner
from gisgrid.history import History

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
D1 = dt.date(2026, 11, 2)
CENTER = "镇指挥中心 (town command center)"
SECRETS = {"T_WECOM_URL": "wecom-key-5f1e0c9a77", "T_DING_URL": "ding-token-0b3c8d21aa",
           "T_DING_SECRET": "SECd41d8cd98f00b204e9800998ecf8427e", "T_HOOK_TOKEN": "hook-token-9c4a11ee",
           "T_SMTP_USER": "gisgrid-mailer", "T_SMTP_PASS": "smtp-pass-7a77b2c1"}


# --------------------------------------------------------------------------- the loopback robots
class Robots:
    """What the fake robots received, and what they should answer next."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.problems: list[str] = []
        self.script: dict[str, list[tuple[int, dict, float, dict]]] = {}
        self.lock = threading.Lock()

    def answer(self, prefix: str, *replies: tuple[int, dict, float, dict]) -> None:
        self.script.setdefault(prefix, []).extend(replies)

    def of(self, prefix: str) -> list[dict]:
        return [r for r in self.requests if r["path"] == prefix]


def _check(robots: Robots, path: str, query: dict, headers: dict, body: bytes) -> None:
    """The documented request shape of each robot; every deviation is a problem the test reports."""
    problems = robots.problems
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append(f"{path}: content-type {headers.get('content-type')!r}")
    data = json.loads(body.decode("utf-8"))
    if path == "/wecom":
        if query.get("key") != [SECRETS["T_WECOM_URL"]]:
            problems.append("wecom: wrong key")
        if data.get("msgtype") != "markdown" or set(data) != {"msgtype", "markdown"}:
            problems.append(f"wecom: body keys {sorted(data)}")
        content = data["markdown"]["content"]
        if not isinstance(content, str) or not content or len(content.encode("utf-8")) > 4096:
            problems.append(f"wecom: content of {len(content.encode('utf-8'))} bytes")
    elif path == "/ding":
        secret = SECRETS["T_DING_SECRET"]
        stamp = query.get("timestamp", ["0"])[0]
        mac = hmac.new(secret.encode(), f"{stamp}\n{secret}".encode(), hashlib.sha256).digest()
        if query.get("access_token") != [SECRETS["T_DING_URL"]]:
            problems.append("ding: wrong access_token")
        if query.get("sign") != [base64.b64encode(mac).decode()]:
            problems.append("ding: sign does not match")
        if abs(int(stamp) - time.time() * 1000) > 3600_000:
            problems.append("ding: timestamp more than an hour off")
        md = data.get("markdown") or {}
        if data.get("msgtype") != "markdown" or not md.get("title") or not md.get("text"):
            problems.append(f"ding: body {sorted(data)}")
    elif path == "/hook":
        if headers.get("authorization") != f"Bearer {SECRETS['T_HOOK_TOKEN']}":
            problems.append("hook: no bearer token")
        if data.get("source") != "gisgrid" or not isinstance(data.get("items"), list):
            problems.append(f"hook: body {sorted(data)}")


@pytest.fixture(scope="module")
def robots():
    state = Robots()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            headers = {k.lower(): v for k, v in self.headers.items()}
            query = parse_qs(parts.query)
            with state.lock:
                state.requests.append({"path": parts.path, "query": query, "headers": headers,
                                       "json": json.loads(body.decode("utf-8")), "at": time.monotonic()})
                _check(state, parts.path, query, headers, body)
                queue = state.script.get(parts.path) or []
                status, reply, delay, extra = queue.pop(0) if queue else (200, {"errcode": 0, "errmsg": "ok"}, 0, {})
            time.sleep(delay)
            raw = json.dumps(reply).encode()
            try:
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
            except OSError:  # the client gave up (a timeout test)
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.port = server.server_address[1]  # type: ignore[attr-defined]
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def fresh(robots):
    """The robots with nothing received and nothing scripted."""
    robots.requests.clear()
    robots.problems.clear()
    robots.script.clear()
    return robots


# --------------------------------------------------------------------------- SMTP with STARTTLS
def _self_signed(folder: Path) -> tuple[Path, Path]:
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(hours=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@pytest.fixture(scope="module")
def smtp(tmp_path_factory):
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    folder = tmp_path_factory.mktemp("smtp")
    cert, key = _self_signed(folder)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    received: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
            received.append({"to": list(envelope.rcpt_tos), "tls": session.ssl is not None,
                             "auth": session.authenticated,
                             "message": message_from_bytes(envelope.content, policy=policy.default)})
            return "250 OK"

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (auth_data.login.decode() == SECRETS["T_SMTP_USER"]
              and auth_data.password.decode() == SECRETS["T_SMTP_PASS"])
        return AuthResult(success=ok)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    controller = Controller(Handler(), hostname="127.0.0.1", port=port, tls_context=ctx, require_starttls=True,
                            auth_required=True, auth_require_tls=True, authenticator=authenticator)
    controller.start()
    yield {"port": port, "ca": cert, "received": received}
    controller.stop()


# --------------------------------------------------------------------------- the town and its config
def dispatch_toml(robots, smtp, *, retry: str = "attempts = 3\nbackoff_s = 0.05\nmax_backoff_s = 0.2",
                  wecom_extra: str = "", escalation: str = "after_days = [2, 5]\ndepartment = \"镇网格化服务管理中心\"",
                  mail_owner: str = "陈平", hook_owner: str = "蔡宇霞") -> str:
    base = f"http://127.0.0.1:{robots.port}"
    return f"""
[dispatch]
default = "town_wecom"
command_center = "center_ding"
base_url = "https://gis.example.cn/gisgrid"
remind_days_before = [1]
owners = {{ "{hook_owner}" = "platform", "{mail_owner}" = {{ channel = "mail", to = "chenping@example.cn" }} }}

[dispatch.retry]
{retry}

[dispatch.escalation]
{escalation}

[dispatch.channels.town_wecom]
kind = "wecom"
url_env = "T_WECOM_URL"
{wecom_extra}

[dispatch.channels.center_ding]
kind = "dingtalk"
url_env = "T_DING_URL"
secret_env = "T_DING_SECRET"

[dispatch.channels.platform]
kind = "webhook"
url = "{base}/hook"
token_env = "T_HOOK_TOKEN"

[dispatch.channels.mail]
kind = "email"
host = "127.0.0.1"
port = {smtp['port']}
sender = "gisgrid@example.cn"
username_env = "T_SMTP_USER"
password_env = "T_SMTP_PASS"
ca_file = "{smtp['ca']}"
"""


def secret_env(robots) -> dict[str, str]:
    base = f"http://127.0.0.1:{robots.port}"
    return {**SECRETS, "T_WECOM_URL": f"{base}/wecom?key={SECRETS['T_WECOM_URL']}",
            "T_DING_URL": f"{base}/ding?access_token={SECRETS['T_DING_URL']}",
            "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}  # urllib honours *_proxy


def secret_values(robots) -> list[str]:
    return sorted(set(SECRETS.values()) | {v for k, v in secret_env(robots).items() if k.startswith("T_")})


@pytest.fixture(scope="module")
def demo(tmp_path_factory, robots, smtp):
    """The demo town's data, and ``gisgrid run --dispatch`` of D1 on it (in-process, no maps).

    Returns the folder, the run's findings and what the robots and the mail server received from the run.
    """
    folder = tmp_path_factory.mktemp("demo")
    (folder / "data").mkdir()
    data = ROOT / "data" / "geo"  # the committed demo data (test_cli_run holds it equal to what gisgrid demo makes)
    base = (data / "gisgrid.toml").read_text(encoding="utf-8").replace('path = "', f'path = "{data}/')
    assert "\n[coverage]\n" in base
    base = base.replace("\n[coverage]\n", "\n[coverage]\ncleaned_grids = false  # not what this file tests\n")
    config = folder / "data" / "run.toml"
    config.write_text(base + dispatch_toml(robots, smtp), encoding="utf-8")
    robots.requests.clear()
    mails_before = len(smtp["received"])
    old = dict(os.environ)
    os.environ.update(secret_env(robots))
    try:
        result = pipeline.run(config, out=folder / "out", as_of=D1, maps=False, dispatch=True)
    finally:
        os.environ.clear()
        os.environ.update(old)
    return {"folder": folder, "base": base, "result": result, "findings": result.assessment.findings,
            "requests": list(robots.requests), "problems": list(robots.problems),
            "mails": smtp["received"][mails_before:]}


def town_with_history(demo, tmp_path, robots, smtp, *dates, **toml) -> tuple[Path, Path]:
    """A config beside the demo data and a history with ``demo``'s findings recorded on ``dates``."""
    config = demo["folder"] / "data" / f"{tmp_path.name}.toml"
    config.write_text(demo["base"] + dispatch_toml(robots, smtp, **toml), encoding="utf-8")
    out = tmp_path / "out"
    hist = History(out / "reports" / "history.sqlite")
    for day in dates:
        hist.record(demo["findings"], as_of=day)
    return config, out


def cli(*args: object) -> int:
    """``gisgrid ARGS`` in this process (its stdout and stderr captured by pytest); the exit code."""
    from gisgrid.cli import main

    try:
        return main([str(a) for a in args])
    finally:  # main() points the gisgrid logger at this test's captured stderr: give it back
        root = logging.getLogger("gisgrid")
        root.handlers[:] = []
        root.propagate = True
        root.setLevel(logging.NOTSET)


def owners_of(life: pd.DataFrame) -> set[str]:
    """Every party of every open finding (the oracle: owners split as the task lists split them)."""
    return {w for o, s in zip(life["owner"], life["status"], strict=True)
            if s in ("new", "persisting", "overdue", "reopened") for w in (split_owner(o) or [CENTER])}


# --------------------------------------------------------------------------- tests
def test_run_dispatch_sends_each_owner_once_in_the_documented_shapes(demo, smtp):
    result = demo["result"]
    assert demo["problems"] == []
    life = result.lifecycle
    owners = owners_of(life)
    # one message per owner (the webhook's and the mail owner's on their channels), plus the center's digest
    wecom = [r for r in demo["requests"] if r["path"] == "/wecom"]
    ding = [r for r in demo["requests"] if r["path"] == "/ding"]
    hook = [r for r in demo["requests"] if r["path"] == "/hook"]
    mails = demo["mails"]
    assert len(hook) == 1
    assert hook[0]["json"]["recipient"] == "蔡宇霞"
    assert len(mails) == 1
    assert mails[0]["to"] == ["chenping@example.cn"]
    assert mails[0]["tls"]
    assert mails[0]["auth"]
    mail = mails[0]["message"]
    assert mail.get_content_type() == "text/plain"
    assert "陈平" in mail["Subject"]
    assert "river_unassigned" in mail.get_content()
    to_wecom = owners - {"蔡宇霞", "陈平", CENTER}
    assert len(wecom) == len(to_wecom)
    assert all(any(o in r["json"]["markdown"]["content"] for r in wecom) for o in to_wecom)
    # the center: its own items (owner message) and the digest of the veto items, on DingTalk
    veto = life[(life["severity"] == "veto") & life["status"].isin(["new"])]
    assert len(veto) >= 1
    assert len(ding) == 2
    digest = ding[-1]["json"]["markdown"]["text"]
    assert all(fid in digest for fid in veto["finding_id"])
    # links to the owner's task list and map under base_url, as run wrote them
    first = wecom[0]["json"]["markdown"]["content"]
    assert "](https://gis.example.cn/gisgrid/reports/2026-11-02/owners/" in first
    assert result.dispatched.exit_code == 0
    assert result.exit_code == 1
    assert "dispatch 2026-11-02: sent" in result.one_line()


def test_same_date_again_sends_nothing_and_secrets_stay_out(demo, fresh, smtp, monkeypatch, caplog, capsys):
    out = demo["folder"] / "out"
    monkeypatch.chdir(demo["folder"])
    for k, v in secret_env(fresh).items():
        monkeypatch.setenv(k, v)
    mails = len(smtp["received"])
    caplog.set_level(logging.DEBUG, logger="gisgrid")
    code = cli("dispatch", demo["folder"] / "data" / "run.toml", "--out", out, "-vv")
    assert code == 0
    assert fresh.requests == []
    assert len(smtp["received"]) == mails
    with sqlite3.connect(out / "reports" / "history.sqlite") as conn:
        statuses = conn.execute("SELECT status, COUNT(*) FROM dispatch_outbox GROUP BY status").fetchall()
    assert statuses == [("sent", len(demo["requests"]) + len(demo["mails"]))]
    # no secret in a log line, on the terminal, or in any file the run or the dispatch wrote (the history too)
    printed = capsys.readouterr()
    texts = [r.getMessage() for r in caplog.records] + [printed.out, printed.err]
    blobs = [p.read_bytes() for p in out.rglob("*") if p.is_file()]
    for secret in secret_values(fresh):
        assert not any(secret in t for t in texts), secret
        assert not any(secret.encode() in b for b in blobs), secret


def test_later_runs_send_only_changes_reminders_and_escalations(demo, tmp_path, fresh, smtp, monkeypatch):
    for k, v in secret_env(fresh).items():
        monkeypatch.setenv(k, v)
    day2, day3 = D1 + dt.timedelta(days=2), D1 + dt.timedelta(days=10)
    config, out = town_with_history(demo, tmp_path, fresh, smtp, D1)
    for k in SECRETS:  # a dry run reads no secret, sends nothing and records nothing
        monkeypatch.delenv(k)
    dry = pipeline.send_dispatch(config, out=out, as_of=D1, dry_run=True)
    assert fresh.requests == []
    assert dry.sent == []
    for k, v in secret_env(fresh).items():
        monkeypatch.setenv(k, v)
    mails = len(smtp["received"])
    assert pipeline.send_dispatch(config, out=out, as_of=D1).exit_code == 0
    got = [r["json"]["markdown"].get("content") or r["json"]["markdown"].get("text") if "markdown" in r["json"]
           else r["json"]["text"] for r in fresh.requests]
    got += [m["message"].get_content() for m in smtp["received"][mails:]]
    # the dry run showed exactly what went out
    assert sorted(t.rstrip("\n") for t in got) == sorted(m.body for m in dry.preview)
    fresh.requests.clear()
    hist = History(out / "reports" / "history.sqlite")
    life2 = hist.record(demo["findings"], as_of=day2)
    assert set(life2["status"]) == {"persisting"}
    res2 = pipeline.send_dispatch(config, out=out, as_of=day2)
    # nothing changed status: only the day-before-deadline reminders (veto: 3 days allowed) go out
    due = life2[[(d - day2).days == 1 for d in life2["deadline"]]]
    assert len(due) >= 1
    expected = owners_of(due)
    assert {r for _, r, k in res2.sent if k == "owner"} == expected
    assert all(k == "owner" for _, _, k in res2.sent)
    texts = [r["json"].get("markdown", {}).get("content") or r["json"].get("markdown", {}).get("text") or
             r["json"].get("text") for r in fresh.requests]
    assert all("临期提醒" in t for t in texts)
    fresh.requests.clear()
    # ten days later: the high items are overdue by 3 days, the veto item by 7: overdue notices, level 1 for all
    # of them (the department), level 2 (the center) for the veto item only
    life3 = hist.record(demo["findings"], as_of=day3)
    res3 = pipeline.send_dispatch(config, out=out, as_of=day3)
    assert res3.exit_code == 0
    assert fresh.problems == []
    late = life3[life3["status"] == "overdue"]
    assert set(late["days_overdue"]) == {3, 7}
    sent = {(r, k) for _, r, k in res3.sent}
    assert ("镇网格化服务管理中心", "escalation") in sent
    assert (CENTER, "escalation") in sent
    assert {r for r, k in sent if k == "owner"} == owners_of(late)
    dept = next(r for r in fresh.requests if "逐级上报" in json.dumps(r["json"], ensure_ascii=False)
                and "镇网格化服务管理中心" in json.dumps(r["json"], ensure_ascii=False))
    text = dept["json"]["markdown"]["content"]
    for row in late.itertuples():
        assert row.finding_id in text  # every overdue item, with who was responsible and since when
    assert "自 since 2026-11-02" in text
    assert "十总村村委会 (V12)" in text
    center = [r for r in fresh.requests if r["path"] == "/ding" and "第 2 级" in r["json"]["markdown"]["text"]]
    veto_ids = set(late.loc[late["severity"] == "veto", "finding_id"])
    assert len(center) == 1
    assert all(f in center[0]["json"]["markdown"]["text"] for f in veto_ids)
    fresh.requests.clear()
    assert pipeline.send_dispatch(config, out=out, as_of=day3).sent == []
    assert fresh.requests == []


def test_retries_are_bounded_a_failing_channel_is_reported_and_the_rest_goes_out(demo, tmp_path, fresh, smtp,
                                                                                 monkeypatch):
    for k, v in secret_env(fresh).items():
        monkeypatch.setenv(k, v)
    config, out = town_with_history(demo, tmp_path, fresh, smtp, D1, wecom_extra="timeout_s = 0.3")
    # WeCom: one slow answer (past the timeout), then 503s for ever; the webhook: a 500, then fine
    fresh.answer("/wecom", (200, {"errcode": 0}, 0.6, {}), *[(503, {}, 0, {})] * 20)
    fresh.answer("/hook", (500, {}, 0, {}))
    start = time.monotonic()
    res = pipeline.send_dispatch(config, out=out, as_of=D1)
    took = time.monotonic() - start
    assert res.exit_code == 4
    assert set(res.failed) == {"town_wecom"}
    assert "HTTP 503 after 3 attempt(s)" in res.failed["town_wecom"]
    wecom = fresh.of("/wecom")
    assert len(wecom) == 3  # attempts = 3 for the first message; the channel's other messages wait
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(wecom)]
    # stamped by the server thread, which may see a request late under load: a slack, far above a busy loop's ~0
    assert gaps[0] >= 0.3
    assert gaps[1] >= 0.1 - 0.03
    assert took < 5
    assert len(fresh.of("/hook")) == 2
    assert len(fresh.of("/ding")) == 2
    unsent = res.left
    assert unsent == len(owners_of(demo["result"].lifecycle) - {"蔡宇霞", "陈平", CENTER})
    # the robot is back: the same date sends exactly the unsent messages
    fresh.requests.clear()
    fresh.script.clear()
    res2 = pipeline.send_dispatch(config, out=out, as_of=D1)
    assert res2.exit_code == 0
    assert len(res2.sent) == unsent
    assert {r["path"] for r in fresh.requests} == {"/wecom"}
    assert len(fresh.requests) == unsent


def test_a_channel_down_until_the_next_run_hands_its_items_to_that_run(demo, tmp_path, fresh, smtp, monkeypatch):
    for k, v in secret_env(fresh).items():
        monkeypatch.setenv(k, v)
    config, out = town_with_history(demo, tmp_path, fresh, smtp, D1)
    fresh.answer("/wecom", *[(503, {}, 0, {})] * 3)
    res1 = pipeline.send_dispatch(config, out=out, as_of=D1)
    assert set(res1.failed) == {"town_wecom"}
    unsent = res1.left
    assert unsent >= 2
    fresh.requests.clear()
    # the next night the robot is back: its messages tell those owners their (now persisting) items
    day2 = D1 + dt.timedelta(days=1)
    History(out / "reports" / "history.sqlite").record(demo["findings"], as_of=day2)
    res2 = pipeline.send_dispatch(config, out=out, as_of=day2)
    assert res2.superseded == unsent
    assert f"{unsent} unsent message(s) of earlier dates replaced" in res2.one_line()
    told = {r for c, r, k in res2.sent if c == "town_wecom" and k == "owner"}
    assert len(told) == unsent
    assert all("待办 open" in r["json"]["markdown"]["content"] for r in fresh.of("/wecom"))
    # and a late dispatch of the first night cannot tell them twice
    fresh.requests.clear()
    assert pipeline.send_dispatch(config, out=out, as_of=D1).sent == []
    assert fresh.requests == []


def test_rate_limits_are_honoured(demo, tmp_path, fresh, smtp, monkeypatch):
    for k, v in secret_env(fresh).items():
        monkeypatch.setenv(k, v)
    config, out = town_with_history(demo, tmp_path, fresh, smtp, D1,
                                    wecom_extra="rate_per_minute = 2\nrate_window_s = 0.4")
    # the robot says "too many" once (errcode 45009 with HTTP 200), then a 429 asks for 0.3 s
    fresh.answer("/wecom", (200, {"errcode": 45009, "errmsg": "api freq out of limit"}, 0, {}),
                 (429, {}, 0, {"Retry-After": "0.3"}))
    res = pipeline.send_dispatch(config, out=out, as_of=D1)
    assert res.exit_code == 0
    at = [r["at"] for r in fresh.of("/wecom")]
    n_messages = len(owners_of(demo["result"].lifecycle) - {"蔡宇霞", "陈平", CENTER})
    assert len(at) == n_messages + 2
    # never more than 2 requests in any 0.4 s (stamped by the server thread, which may see a request late under
    # load: a slack of 0.08 s, far from the ~0 s of requests sent without waiting)
    assert all(at[i + 2] - at[i] >= 0.4 - 0.08 for i in range(len(at) - 2))
    assert at[2] - at[1] >= 0.3 - 0.08  # Retry-After honoured


def test_a_crash_between_two_messages_resumes_with_the_unsent_only(demo, tmp_path, fresh, smtp, monkeypatch,
                                                                   capsys):
    config, out = town_with_history(demo, tmp_path, fresh, smtp, D1)
    env = {**ENV, **secret_env(fresh)}
    marker, log = tmp_path / "paused.txt", tmp_path / "dispatch.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gisgrid", "dispatch", str(config), "--out", str(out)],
                                env={**env, "GISGRID_FAULT": "pause:dispatch-3", "GISGRID_PAUSE_FILE": str(marker)},
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert marker.read_text().splitlines() == ["dispatch-3", str(proc.pid)]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    before = [json.dumps(r["json"], ensure_ascii=False) for r in fresh.requests]
    mails_before = len(smtp["received"])
    with sqlite3.connect(out / "reports" / "history.sqlite") as conn:
        rows = conn.execute("SELECT status, COUNT(*) FROM dispatch_outbox GROUP BY status ORDER BY status").fetchall()
    total = sum(n for _, n in rows)
    assert dict(rows) == {"sent": 2, "pending": total - 2}
    assert total > 3
    for k, v in secret_env(fresh).items():  # the next dispatch (here in-process) finishes the job
        monkeypatch.setenv(k, v)
    capsys.readouterr()
    assert cli("dispatch", config, "--out", out) == 0
    after = [json.dumps(r["json"], ensure_ascii=False) for r in fresh.requests][len(before):]
    mails = len(smtp["received"]) - mails_before
    assert len(before) + len(after) + mails == total  # every message once: none lost, none twice (no mail before
    # the kill: the mail owner sorts after the first two)
    assert not set(before) & set(after)
    assert f"sent {total - 2}, left 0" in capsys.readouterr().out


def _hostile_life(n: int, owner: str) -> pd.DataFrame:
    return pd.DataFrame({
        "finding_id": [f"area_gap-{i:04d}" for i in range(n)], "kind": "area_gap", "severity": "high",
        "status": "new", "owner": owner, "village_id": "V1](http://evil.example/v)", "grid_id": None,
        "measure": 1234.5, "unit": "m2", "deadline": D1 + dt.timedelta(days=7), "opened_on": D1, "days_overdue": 0})


HOSTILE = ('张三](http://evil.example/x) **粗** <font color="warning">红</font> # [点我](javascript:alert(1)) `x`'
           "\n### 标题")


def test_hostile_names_cannot_inject_markdown_and_long_lists_are_cut_at_4096_bytes(tmp_path, fresh, monkeypatch):
    options = parse_dispatch({"default": "w", "max_items": 500,
                              "channels": {"w": {"kind": "wecom", "url_env": "T_WECOM_URL"}}})
    life = _hostile_life(300, HOSTILE)
    msgs, _unrouted = plan_messages(life, as_of=D1, options=options, sent=set(), center=CENTER, town="东社镇",
                                   links=lambda kind, who: [("任务清单 task list", "https://gis.example.cn/t.csv")])
    owner = next(m for m in msgs if m.kind == "owner")
    body = owner.body
    assert len(body.encode("utf-8")) <= 4096 < len(body.encode("utf-8")) + 400  # cut near the limit, not far
    assert 1 <= owner.listed < 300
    assert len(owner.items) == 300
    assert f"…另有 {300 - owner.listed} 项 and {300 - owner.listed} more" in body
    assert body.rstrip().endswith("(https://gis.example.cn/t.csv)")  # the link survives the cut
    assert body.count("](") == 1
    assert "http://evil" not in body
    assert "](javascript" not in body
    for bad in ("<font", "**粗**", "\n### 标题", "`x`", "[点我]"):
        assert bad not in body, bad
    assert "张三" in body
    assert "粗" in body
    # the same through the robot: what arrives is at most 4,096 bytes and every item is marked told
    for k, v in secret_env(fresh).items():
        monkeypatch.setenv(k, v)
    from gisgrid.dispatch import send

    res = send(life, db_path=tmp_path / "h.sqlite", as_of=D1, options=options, center=CENTER, run_stamp="x")
    assert res.exit_code == 0
    assert fresh.problems == []
    again, _ = plan_messages(life, as_of=D1, options=options, sent=_sent(tmp_path / "h.sqlite"), center=CENTER)
    assert again == []


def _sent(path: Path) -> set:
    with sqlite3.connect(path) as conn:
        return {tuple(r) for r in conn.execute("SELECT recipient, finding_id, tag FROM dispatch_notified")}


def test_config_is_refused_with_the_fix_and_never_echoes_a_secret(monkeypatch):
    pasted = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-real-key"
    with pytest.raises(ConfigError) as err:
        parse_dispatch({"default": "w", "channels": {"w": {"kind": "wecom", "url_env": pasted}}})
    assert "693a91f6" not in str(err.value)
    assert "environment variable" in str(err.value)
    with pytest.raises(ConfigError, match="did you mean 'town_wecom'"):
        parse_dispatch({"default": "town_wecon", "channels": {"town_wecom": {"kind": "wecom", "url_env": "X"}}})
    with pytest.raises(ConfigError, match="kind"):
        parse_dispatch({"channels": {"x": {"kind": "sms"}}})
    with pytest.raises(ConfigError, match="WeCom's limit of 4096"):
        parse_dispatch({"channels": {"w": {"kind": "wecom", "url_env": "X", "max_bytes": 8000}}})
    monkeypatch.delenv("T_UNSET_URL", raising=False)
    from gisgrid.dispatch import check_secrets
    from gisgrid.dispatch.options import read_secrets

    opts = parse_dispatch({"channels": {"w": {"kind": "wecom", "url_env": "T_UNSET_URL"}}})
    assert check_secrets(opts) == ["T_UNSET_URL"]
    monkeypatch.setenv("T_UNSET_URL", "693a91f6-key-without-scheme")  # the key alone, not the address
    with pytest.raises(ConfigError, match="T_UNSET_URL") as err:
        read_secrets(opts.channels["w"])
    assert "693a91f6" not in str(err.value)
    with pytest.raises(ConfigError, match=r"T_UNSET_URL \(the address.*is not an http") as err:
        check_secrets(opts)  # what run --dispatch asks before it records anything
    assert "693a91f6" not in str(err.value)


def test_check_refuses_a_bad_dispatch_section_and_dispatch_needs_its_secrets(demo, tmp_path, robots, smtp,
                                                                             monkeypatch, capsys):
    from gisgrid.io.config import load_config

    config = tmp_path / "bad.toml"
    good = dispatch_toml(robots, smtp)
    body = demo["base"]
    config.write_text(body + good.replace('kind = "dingtalk"', 'kind = "dingtalk"\nsecret = "SEC-pasted"'),
                      encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['secret'\].*did you mean 'secret_env'"):
        pipeline.validate(load_config(config))  # what gisgrid check and gisgrid run both run
    config.write_text(body + good, encoding="utf-8")
    monkeypatch.delenv("T_DING_SECRET", raising=False)
    with pytest.raises(ConfigError, match="T_DING_SECRET") as err:
        pipeline.send_dispatch(config, out=demo["folder"] / "out")
    assert not any(v in str(err.value) for v in SECRETS.values())
    # run --dispatch refuses before anything is read or recorded: exit 2, naming the variable
    code = cli("run", config, "--out", tmp_path / "out", "--dispatch", "-q")
    assert code == 2
    assert "T_DING_SECRET" in capsys.readouterr().err
    assert not (tmp_path / "out" / "reports" / "history.sqlite").exists()
