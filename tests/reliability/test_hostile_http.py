"""docs/reliability.md §4 (hostile input): hypothesis-generated requests against every outside-facing route, through the
real ASGI stack (the Starlette app, and CallbackFastPath as `wqbot serve` runs it).

Two properties:
- without a valid signature, bearer token or login state, a request never gets a 5xx and
  changes nothing: every row of every table and the queue are compared before and after
  (the one exception: /oauth/h5 and /wx/qrlogin start a login for anyone, which is one new
  state row and nothing else);
- with a valid signature or token, whatever else is garbage, never a 5xx.
"""

from __future__ import annotations

import json
import string
import time
from urllib.parse import quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, event, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tests.conftest import TEST_ENV
from tests.reliability.hostile import AUTH, CORP, PUBLIC, USERS, changes, examples, snapshot
from tests.support import app_crypto, click, contacts_crypto, signed

TOKEN = TEST_ENV["WEIQIAN_API_TOKEN"]
FUZZ = hsettings(
    max_examples=examples(150, 2000),
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


# -- strategies ---------------------------------------------------------------------------------
_TCHAR = string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~"
_VISIBLE = st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f")
_NASTY = [
    "",
    "0",
    "-1",
    "+1",
    "1e9",
    "99999999999999999999999",
    "%zz",
    "%",
    "%00",
    "+",
    "a b",
    "\x00",
    "//evil.example",
    "https://evil.example/x",
    "/\\evil.example",
    "javascript:alert(1)",
    "..%2f..%2f",
    "A" * 300,
    "9" * 40,
    "null",
    "[]",
    "{}",
    "<xml/>",
    "]]>",
    "&amp;",
    "🙂",
    "\u202e",
    "中文",
    "eyJhZnRlciI6ICJcdTAwMDAifQ",
]  # last: an /org/users cursor of {"after": "\u0000"}
_QUERY_KEYS = [
    "msg_signature",
    "timestamp",
    "nonce",
    "echostr",
    "code",
    "state",
    "next",
    "cursor",
    "limit",
    "after",
    "id",
    "url",
    "ticket",
    "appid",
    "redirect_uri",
]

text_or_nasty = st.one_of(st.text(max_size=60), st.sampled_from(_NASTY))
query_pairs = st.lists(
    st.tuples(st.one_of(st.sampled_from(_QUERY_KEYS), st.text(max_size=12)), text_or_nasty), max_size=6
).map(urlencode)
raw_query = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"), max_size=80)
query = st.one_of(query_pairs, raw_query)


def _near_miss(token: str):
    """Tokens one edit away from the real one (never whitespace: the check strips it)."""
    i = st.integers(0, len(token) - 1)
    ch = st.sampled_from(string.ascii_letters + string.digits + "-_")
    return st.one_of(
        i.map(lambda k: token[:k] + token[k + 1 :]),
        st.tuples(i, ch).map(lambda a: token[: a[0]] + a[1] + token[a[0] :]),
        st.tuples(i, ch).filter(lambda a: token[a[0]] != a[1]).map(lambda a: token[: a[0]] + a[1] + token[a[0] + 1 :]),
        st.just(token.upper()),
        st.just(token[::-1]),
    )


bad_authorization = st.one_of(
    st.text(_VISIBLE, max_size=80),
    _near_miss(TOKEN).map(lambda t: "Bearer " + t),
    st.sampled_from(["", "Bearer", "Bearer ", "Basic " + TOKEN, TOKEN, "Token " + TOKEN, "Bearer\t" + TOKEN[:-1]]),
)
_HEADER_NAMES = [
    "content-type",
    "content-length",
    "transfer-encoding",
    "cookie",
    "host",
    "user-agent",
    "accept",
    "x-forwarded-for",
    "x-forwarded-proto",
    "expect",
    "connection",
    "content-encoding",
    "origin",
    "referer",
    "x-real-ip",
    "accept-encoding",
]
header_value = st.one_of(
    st.text(_VISIBLE, max_size=80),
    st.sampled_from(
        [
            "-1",
            "0",
            "1",
            "99999999999999999999",
            "abc",
            "chunked",
            "gzip",
            "100-continue",
            "close",
            "application/json",
            "application/xml",
            "text/xml; charset=gbk",
            "multipart/form-data",
            "wxwork/4.1 MicroMessenger",
            "wqbot_login=" + "a" * 32,
            "wqbot_login=../../x",
        ]
    ),
)
# Our own cookies, forged: signed-looking "payload.mac" values and junk, in any characters a
# header carries.
cookie_header = st.tuples(
    st.just("cookie"),
    st.builds(
        lambda name, a, b, dot: f"{name}={a}{'.' if dot else ''}{b}",
        st.sampled_from(["wqbot_admin", "wqbot_admin_login", "wqbot_login"]),
        st.one_of(st.text(_VISIBLE.filter(lambda c: c not in ";,"), max_size=30), st.just("e30")),
        st.text(_VISIBLE.filter(lambda c: c not in ";,"), max_size=50),
        st.booleans(),
    ),
)
headers = st.lists(
    st.one_of(
        st.tuples(st.one_of(st.sampled_from(_HEADER_NAMES), st.text(_TCHAR, min_size=1, max_size=24)), header_value),
        cookie_header,
    ),
    max_size=5,
)

_json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), text_or_nasty)
json_value = st.recursive(
    _json_leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4), max_leaves=12
)
_API_FIELDS = [
    "id",
    "type",
    "task_id",
    "title",
    "description",
    "initiator",
    "recipients",
    "url",
    "deadline",
    "result",
    "ticket",
]
api_object = st.dictionaries(
    st.sampled_from(_API_FIELDS),
    st.one_of(
        json_value,
        st.sampled_from(["approve", "sign", "notice", "close", "approved"]),
        st.lists(st.sampled_from(USERS + ("nobody", "")), max_size=4),
        st.just("https://sign.example.com/h5/#/x"),
        st.just(PUBLIC + "/page"),
    ),
    max_size=9,
)
xmlish = st.builds(
    lambda enc, extra: (
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt>{extra}</xml>"
    ),
    st.one_of(
        st.text(max_size=80),
        st.binary(min_size=1, max_size=96).map(lambda b: __import__("base64").b64encode(b).decode()),
    ),
    st.sampled_from(["", "<AgentID>1</AgentID>", "<Encrypt>x</Encrypt>", "<Encrypt/>", "<!-- c -->", "<a><b/></a>"]),
)
body = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    xmlish.map(str.encode),
    json_value.map(lambda v: json.dumps(v).encode()),
    api_object.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
)
method = st.sampled_from(["GET", "GET", "POST", "POST", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
any_text = st.text(max_size=40).map(lambda t: quote(t, safe=""))

CALLBACK_PATHS = st.sampled_from(["/wecom/callback", "/wecom/contacts/callback"])


def routes(real: list[tuple[str, str]], other_paths) -> st.SearchStrategy[tuple[str, str]]:
    """(method, path): three times in four a route as declared, else any method on any path."""
    declared = st.sampled_from(real)
    return st.one_of(
        declared, declared, declared, st.tuples(method, st.one_of(st.sampled_from([p for _, p in real]), other_paths))
    )


API_ROUTES = routes(
    [
        ("POST", "/api/v1/notifications"),
        ("GET", "/api/v1/notifications/wq-evt-hostile-1"),
        ("GET", "/api/v1/notifications/wq%00evt"),
        ("GET", "/api/v1/org/departments"),
        ("GET", "/api/v1/org/users"),
        ("GET", "/api/v1/org/changes"),
        ("POST", "/api/v1/tickets/validate"),
        ("POST", "/api/v1/jssdk/signature"),
    ],
    st.one_of(any_text.map(lambda t: "/api/v1/notifications/" + t), any_text.map(lambda t: "/api/v1/" + t)),
)
LOGIN_ROUTES = routes(
    [("GET", p) for p in ("/oauth/h5", "/oauth/h5/callback", "/wx/qrlogin", "/wx/login", "/login")],
    any_text.map(lambda t: "/oauth/" + t),
)
CALLBACK_ROUTES = routes(
    [(m, p) for m in ("GET", "POST") for p in ("/wecom/callback", "/wecom/contacts/callback")], st.nothing()
)
_STARTS = {"/oauth/h5", "/wx/qrlogin"}
ADMIN_ROUTES = routes(
    [
        ("GET", p)
        for p in (
            "/admin",
            "/admin/",
            "/admin/directory",
            "/admin/notifications",
            "/admin/webhooks",
            "/admin/login",
            "/admin/login/wecom",
            "/admin/login/wecom/callback",
            "/admin/static/admin.css",
        )
    ]
    + [
        ("POST", p)
        for p in (
            "/admin/login",
            "/admin/logout",
            "/admin/actions/sync",
            "/admin/actions/resend",
            "/admin/actions/redeliver",
        )
    ],
    any_text.map(lambda t: "/admin/actions/" + t),
)


def send(client, method: str, path: str, query: str, headers: list, body: bytes, extra_headers=()):
    url = path + ("?" + query if query else "")
    hs = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in [*headers, *extra_headers]]  # as raw as HTTP/1.1
    return client.request(method, url, headers=hs, content=body if method not in ("GET", "HEAD") or body else None)


def assert_unchanged(before, r, what):
    event(f"status {r.status_code}")
    after = snapshot()
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    diff = changes(before, after)
    assert not diff, f"{what}: {r.status_code} changed {diff}"


def _allowed_origins(settings) -> set[str]:
    def origin(u):
        p = urlsplit(u)
        return f"{p.scheme}://{p.netloc}"

    return {
        origin(u)
        for u in (
            settings.public_url,
            settings.h5_url,
            settings.pc_url,
            settings.wecom_oauth_base,
            settings.wecom_sso_base,
        )
        if u
    }


# -- without credentials: nothing changes --------------------------------------------------------
@pytest.mark.parametrize("via", ["app", "served"])
@FUZZ
@given(route=CALLBACK_ROUTES, query=query, headers=headers, body=body)
def test_unsigned_callbacks_change_nothing(clients, via, route, query, headers, body):
    method, path = route
    before = snapshot()
    r = send(clients[via], method, path, query, headers, body)
    assert 400 <= r.status_code < 500, f"{method} {path}?{query}: {r.status_code} {r.text[:200]}"
    assert_unchanged(before, r, f"{method} {path}?{query}")


@FUZZ
@given(
    path=CALLBACK_PATHS,
    enc=st.one_of(
        st.text(max_size=120), st.binary(max_size=200).map(lambda b: __import__("base64").b64encode(b).decode())
    ),
    extra=st.sampled_from(["", "<AgentID>1</AgentID>"]),
)
def test_signed_garbage_changes_nothing(clients, settings, path, enc, extra):
    """A valid msg_signature over an Encrypt that is not ours: refused before anything is applied."""
    crypto = app_crypto(settings) if path == "/wecom/callback" else contacts_crypto(settings)
    now = str(int(time.time()))  # fresh, so the Encrypt itself is what gets refused
    params = {"msg_signature": crypto.sign(now, "n1", enc), "timestamp": now, "nonce": "n1"}
    body = f"<xml><Encrypt><![CDATA[{enc}]]></Encrypt>{extra}</xml>".encode()
    before = snapshot()
    r = clients["served"].post(path, params=params, content=body)
    assert 400 <= r.status_code < 500, f"{enc!r}: {r.status_code} {r.text[:200]}"
    assert_unchanged(before, r, repr(enc))


@FUZZ
@given(route=API_ROUTES, query=query, headers=headers, body=body, authorization=st.one_of(st.none(), bad_authorization))
def test_api_without_token_changes_nothing(clients, route, query, headers, body, authorization):
    method, path = route
    headers = [h for h in headers if h[0].lower() != "authorization"]
    extra = [("authorization", authorization)] if authorization is not None else []
    before = snapshot()
    r = send(clients["app"], method, path, query, headers, body, extra)
    assert r.status_code in (401, 404, 405), f"{method} {path} auth={authorization!r}: {r.status_code} {r.text[:200]}"
    if r.status_code == 401 and method != "HEAD":
        assert r.json()["error"] == "unauthorized"
    assert_unchanged(before, r, f"{method} {path}?{query} auth={authorization!r}")


@FUZZ
@given(route=LOGIN_ROUTES, query=query, headers=headers, body=body)
def test_login_routes_change_nothing_but_a_new_login(clients, settings, route, query, headers, body):
    method, path = route
    before = snapshot()
    r = send(clients["app"], method, path, query, headers, body)
    what = f"{method} {path}?{query} {headers}"
    event(f"status {r.status_code}")
    assert r.status_code < 500, f"{what}: {r.status_code} {r.text[:300]}"
    diff = changes(before, snapshot())
    if path in _STARTS and method in ("GET", "HEAD") and "login_oauth_state" in diff:
        (n0, _), (n1, _) = diff.pop("login_oauth_state")
        assert n1 == n0 + 1, what  # one new login started, nothing else touched
    assert not diff, f"{what}: {r.status_code} changed {diff}"
    if 300 <= r.status_code < 400:
        location = r.headers["location"]
        assert any(location.startswith(o + "/") for o in _allowed_origins(settings)), f"{what} → {location}"


@FUZZ
@given(
    route=ADMIN_ROUTES,
    query=query,
    headers=headers,
    body=body,
    form=st.dictionaries(
        st.sampled_from(["password", "login_nonce", "csrf", "notification_id", "delivery_id", "userid", "next"]),
        text_or_nasty,
        max_size=4,
    ),
)
def test_admin_without_a_session_changes_nothing(clients, route, query, headers, body, form):
    """The operators' console is outside-facing too: without a session nothing changes."""
    method, path = route
    if form and method == "POST":
        headers = [h for h in headers if h[0].lower() not in ("content-type", "content-length", "transfer-encoding")]
        headers.append(("content-type", "application/x-www-form-urlencoded"))
        body = urlencode(form).encode()
    before = snapshot()
    r = send(clients["app"], method, path, query, headers, body)
    assert_unchanged(before, r, f"{method} {path}?{query} {headers} {body[:100]!r}")
    assert r.status_code != 200 or path in ("/admin/login", "/admin/static/admin.css"), (path, r.status_code)


@pytest.mark.parametrize("case", ["form nonce", "QR login state", "session cookie", "login cookie"])
def test_admin_non_ascii_input_is_refused_not_500(clients, settings, case):
    """Found by the test above: hmac/secrets.compare_digest raises TypeError on str with
    non-ASCII characters, so the login form, the QR login return and a forged cookie
    answered 500."""
    client = clients["app"]
    assert client.get("/admin/login").status_code == 200  # sets the login-state cookie
    if case == "form nonce":
        r = client.post("/admin/login", data={"login_nonce": "é", "password": "x"})
    elif case == "QR login state":
        r = client.get("/admin/login/wecom/callback", params={"code": "c", "state": "é"})
    else:
        name = "wqbot_admin" if case == "session cookie" else "wqbot_admin_login"
        client.cookies.clear()
        r = client.request(
            "POST" if case == "login cookie" else "GET",
            "/admin/login" if case == "login cookie" else "/admin",
            headers=[(b"cookie", name.encode() + b"=e30.\xe9\xe9")],
            data={"login_nonce": "x"},
        )
    assert 400 <= r.status_code < 500 or r.status_code in (302, 303), (r.status_code, r.text[:200])


# -- with credentials: garbage still never gets a 5xx --------------------------------------------
@FUZZ
@given(route=API_ROUTES, query=query, headers=headers, body=body)
def test_api_with_token_and_garbage_never_5xx(clients, route, query, headers, body):
    method, path = route
    headers = [h for h in headers if h[0].lower() != "authorization"]
    r = send(clients["app"], method, path, query, headers, body, AUTH.items())
    event(f"status {r.status_code}")
    assert r.status_code < 500, f"{method} {path}?{query} {body[:200]!r}: {r.status_code} {r.text[:300]}"
    if r.status_code >= 400 and method != "HEAD" and r.status_code not in (404, 405):
        assert set(r.json()) == {"error", "message"} and r.json()["message"]


@pytest.mark.parametrize("case", ["notification id", "users cursor"])
def test_a_nul_character_gets_400_not_500(clients, case):
    """Found by the test above on PostgreSQL (SQLite stores NUL; psycopg2 refuses a string with
    one, ValueError, so these answered 500)."""
    import base64

    if case == "notification id":
        r = clients["app"].get("/api/v1/notifications/wq%00evt", headers=AUTH)
        assert r.status_code == 400 and r.json()["error"] == "invalid_id", r.text
    else:
        cursor = base64.urlsafe_b64encode(json.dumps({"after": "li\u0000si"}).encode()).decode().rstrip("=")
        r = clients["app"].get("/api/v1/org/users", params={"cursor": cursor}, headers=AUTH)
        assert r.status_code == 400 and r.json()["error"] == "invalid_cursor", r.text


# WeCom message fields, with values a hostile (or broken) sender could put in them.
_FIELDS = [
    "MsgType",
    "Event",
    "EventKey",
    "ChangeType",
    "UserID",
    "NewUserID",
    "Name",
    "Department",
    "MainDepartment",
    "Id",
    "ParentId",
    "Order",
    "Content",
    "MsgId",
    "AgentID",
    "TaskId",
    "CardType",
    "ResponseCode",
    "SelectedItems",
    "FromUserName",
    "CreateTime",
    "Status",
    "IsLeaderInDept",
    "Mobile",
    "Email",
    "Position",
]
_VALUES = [
    "text",
    "event",
    "click",
    "view",
    "enter_agent",
    "template_card_event",
    "change_contact",
    "create_user",
    "update_user",
    "delete_user",
    "create_party",
    "update_party",
    "delete_party",
    "update_tag",
    "pending",
    "help",
    "approve",
    "reject",
    "待办",
    "帮助",
    "lisi",
    "nobody",
    "1",
    "0",
    "-1",
    "1,2,3",
    "99999999999999999999",
    "button_interaction",
]
# Characters XML can carry (WeCom's own XML is well-formed): what reaches the handlers.
xml_text = st.one_of(
    st.text(st.characters(exclude_categories=("Cs", "Cc")), max_size=60),
    st.sampled_from([v for v in _NASTY if v != "\x00"]),
)
field_value = st.one_of(
    st.sampled_from(_VALUES),
    xml_text,
    st.integers(),
    st.dictionaries(
        st.sampled_from(["SelectedItem", "QuestionKey", "OptionIds", "OptionId", "Key"]),
        st.one_of(xml_text, st.lists(xml_text, max_size=3)),
        max_size=3,
    ),
)
inner_fields = st.dictionaries(st.sampled_from(_FIELDS), field_value, max_size=10)


@pytest.mark.parametrize("via", ["app", "served"])
@FUZZ
@given(path=CALLBACK_PATHS, fields=inner_fields, sender=st.sampled_from(USERS + ("nobody", "")))
def test_signed_callbacks_with_garbage_inside_never_5xx(clients, settings, via, path, fields, sender):
    """Correctly signed and encrypted, for our corp, with any fields inside: never a 5xx (a 5xx
    makes WeCom retry the same delivery for ever)."""
    from bot.callback.xml import document

    plaintext = document({"ToUserName": CORP, "FromUserName": sender, "CreateTime": 1700000000, **fields})
    client = clients[via]
    r = client.post_signed(*client.sign(plaintext, path), url=path)
    event(f"status {r.status_code}")
    assert r.status_code < 500, f"{plaintext}: {r.status_code} {r.text[:300]}"


@FUZZ
@given(
    flow=st.sampled_from([("/oauth/h5", "/oauth/h5/callback"), ("/wx/qrlogin", "/wx/login")]),
    code=text_or_nasty,
    headers=headers,
)
def test_a_real_login_state_with_a_hostile_code_never_5xx(clients, flow, code, headers):
    from store.login import LoginTicket

    client = clients["app"]
    start = client.get(flow[0], params={"next": "/pages/index"})
    assert start.status_code == 302, start.text
    state = dict(p.split("=", 1) for p in urlsplit(start.headers["location"]).query.split("&") if "=" in p)["state"]
    tickets = LoginTicket.select().count()
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers if k.lower() != "cookie"]
    r = client.get(flow[1], params={"code": code, "state": state}, headers=headers)
    event(f"status {r.status_code}")
    assert r.status_code < 500, f"{code!r}: {r.status_code} {r.text[:300]}"
    assert LoginTicket.select().count() == tickets  # WeCom issued no such code: nobody is logged in


# -- raw bytes at a real `wqbot serve` --------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tests.reliability.hostile import wqbot_serve

    with wqbot_serve(tmp_path_factory.mktemp("serve")) as running:
        yield running


_RAW_TARGETS = [
    "/wecom/callback",
    "/wecom/contacts/callback",
    "/api/v1/notifications",
    "/api/v1/org/users",
    "/api/v1/tickets/validate",
    "/oauth/h5",
    "/oauth/h5/callback",
    "/wx/login",
    "/login",
    "/healthz",
    "/metrics",
    "/admin",
    "/admin/login",
    "*",
    "http://evil.example/",
    "//x",
    "/%",
    "/%00",
    "/\x7f",
]
_HTTP_METHOD = st.sampled_from(["GET", "POST", "HEAD", "PUT", "OPTIONS", "CONNECT", "TRACE", "PRI"])
_HTTP_VERSION = st.sampled_from(["HTTP/1.0", "HTTP/2.0", "HTTP/0.9", "HTTP/1.1x", "", "http/1.1"])
_ANY_TARGET = st.text(st.characters(min_codepoint=0x21, max_codepoint=0xFF), min_size=1, max_size=30)
_SANE_LINE = st.tuples(st.sampled_from(["GET", "POST"]), st.sampled_from(_RAW_TARGETS[:14]), query, st.just("HTTP/1.1"))
_WILD_LINE = st.one_of(
    st.tuples(
        st.one_of(_HTTP_METHOD, st.text(_TCHAR, min_size=1, max_size=8)),
        st.one_of(st.sampled_from(_RAW_TARGETS), _ANY_TARGET),
        st.one_of(query, st.just("")),
        st.one_of(_HTTP_VERSION, st.just("HTTP/1.1")),
    ),
)
_SANE_VALUE = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
_SANE_HEADER = st.one_of(
    st.tuples(st.sampled_from(_HEADER_NAMES + ["authorization"]), st.one_of(_SANE_VALUE, header_value)),
    st.tuples(st.text(_TCHAR, min_size=1, max_size=16), _SANE_VALUE),
)
_WILD_HEADER = st.one_of(
    _SANE_HEADER,
    st.tuples(
        st.text(st.characters(min_codepoint=0x01, max_codepoint=0xFF), max_size=16),
        st.text(st.characters(min_codepoint=0x01, max_codepoint=0xFF), max_size=30),
    ),
)


@st.composite
def raw_requests(draw) -> bytes:
    """One request in four anything goes (uvicorn refuses most); the rest parse, so the app is
    reached, with hostile targets, queries, headers, framing and bodies."""
    wild = draw(st.integers(0, 3)) == 0
    method, target, q, version = draw(_WILD_LINE if wild else _SANE_LINE)
    payload = draw(body)
    lines = [f"{method} {target}{'?' + q if q and '?' not in target else q} {version}".encode("latin-1")]
    lines.append(b"Host: 127.0.0.1")
    for name, value in draw(st.lists(_WILD_HEADER if wild else _SANE_HEADER, max_size=5)):
        lines.append(f"{name}: {value}".encode("latin-1"))
    framing = draw(st.sampled_from(["length", "length", "length", "chunked", "bad chunked", "none", "lying length"]))
    if framing == "length":
        lines.append(b"Content-Length: %d" % len(payload))
    elif framing == "chunked":
        lines.append(b"Transfer-Encoding: chunked")
        payload = (b"%x\r\n%s\r\n0\r\n\r\n" % (len(payload), payload)) if payload else b"0\r\n\r\n"
    elif framing == "bad chunked":
        lines.append(b"Transfer-Encoding: chunked")
        payload = draw(
            st.sampled_from(
                [
                    b"zz\r\nabc\r\n0\r\n\r\n",
                    b"5\r\nabc\r\n",
                    b"-1\r\n\r\n",
                    b"ffffffffffffffffff\r\nx\r\n",
                    b"0\r\nX-Trailer: 1\r\n\r\n",
                ]
            )
        )
    elif framing == "lying length":
        lines.append(b"Content-Length: %d" % draw(st.sampled_from([-1, 0, 1, 2**63, 10**30])))
    eol = b"\n" if wild and draw(st.booleans()) else b"\r\n"
    return eol.join(lines) + eol + eol + payload


def _exchange(port: int, request: bytes, wait: float = 1.5) -> bytes:
    """Send `request` on a new connection; whatever comes back within `wait` seconds."""
    import socket
    import time

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(request)
        except OSError:
            pass
        s.settimeout(wait)
        data, until = b"", time.monotonic() + wait
        while time.monotonic() < until:
            try:
                more = s.recv(65536)
            except (TimeoutError, OSError):
                break
            if not more:
                break
            data += more
            if b"\r\n\r\n" in data:
                break
        return data


@hsettings(max_examples=examples(100, 2000), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=raw_requests())
def test_raw_http_at_wqbot_serve_never_5xx(served, request):
    port, log_path = served
    answer = _exchange(port, request)
    status = answer[:12].decode("latin-1")
    event(
        f"answer {status[9:12] or 'none'}" + (" (uvicorn: invalid HTTP)" if b"Invalid HTTP request" in answer else "")
    )
    assert not status.startswith(("HTTP/1.1 5", "HTTP/1.0 5")), (request[:300], answer[:300])


def test_wqbot_serve_is_unharmed_by_the_raw_requests(served, settings):
    """After the raw-bytes test (the same server, the next test in this file): it still answers
    and applies a delivery, and logged no unhandled exception."""
    import httpx

    port, log_path = served
    params, envelope = signed(app_crypto(settings), click("help"))
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
    r = httpx.post(f"http://127.0.0.1:{port}/wecom/callback", params=params, content=envelope, timeout=5)
    assert r.status_code == 200 and r.text.startswith("<xml>")
    log = log_path.read_text()
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log[-3000:]


def test_the_snapshot_sees_every_kind_of_change(clients, settings):
    """The no-change assertions above can fail: an insert, an update of one column, a delete
    and a queued task each show."""
    from bot.queue import huey
    from store.directory import User
    from store.login import OAuthState

    steps = [
        ("user", lambda: User.create(userid="mallory", name="m")),
        ("user", lambda: User.update(position="x").where(User.userid == "lisi").execute()),
        ("login_oauth_state", lambda: OAuthState.update(used_at=1.0).execute()),
        ("user", lambda: User.delete().where(User.userid == "mallory").execute()),
        ("queue", lambda: huey.enqueue(huey.task()(lambda: None).s())),
    ]
    for name, change in steps:
        before = snapshot()
        change()
        assert set(changes(before, snapshot())) == {name}, name
