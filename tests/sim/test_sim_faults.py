"""Fault injection and the call log: every fault kind, counts, shares, paths, and masking."""

from __future__ import annotations

import re
import time

import httpx
import pytest

from sim import create_app
from sim.server import ServerThread

from .conftest import make_config


def first_user(sim) -> str:
    return next(iter(sim.directory.users.values())).userid


def add_fault(client, **spec):
    r = client.post("/sim/faults", json=spec)
    assert r.status_code == 201, r.text
    return r.json()["faults"][0]


def test_errcode_for_the_next_k_calls(client, sim, wx):
    add_fault(client, path="user/get", errcode=-1, count=2)
    tok, uid = wx.get(), first_user(sim)
    codes = [
        client.get("/cgi-bin/user/get", params={"access_token": tok, "userid": uid}).json()["errcode"] for _ in range(3)
    ]
    assert codes == [-1, -1, 0]
    assert client.get("/sim/faults").json()["faults"] == []
    calls = client.get("/sim/calls", params={"api": "user/get"}).json()["calls"]
    assert [c["fault"] for c in calls] == ["errcode -1", "errcode -1", None]


def test_injected_42001_really_expires_the_token(client, sim, wx):
    add_fault(client, path="/cgi-bin/department/simplelist", errcode=42001, count=1)
    tok = wx.get()
    r = client.get("/cgi-bin/department/simplelist", params={"access_token": tok}).json()
    assert r["errcode"] == 42001
    fresh = wx.get()
    assert fresh != tok
    assert client.get("/cgi-bin/department/simplelist", params={"access_token": tok}).json()["errcode"] == 42001
    assert client.get("/cgi-bin/department/simplelist", params={"access_token": fresh}).json()["errcode"] == 0


def test_60020_names_the_ip(client, wx):
    add_fault(client, path="*", errcode=60020, ip="1.2.3.4", count=1)
    r = client.get("/cgi-bin/department/simplelist", params={"access_token": "whatever"}).json()
    assert r["errcode"] == 60020
    assert re.search(r"from ip:?\s*1\.2\.3\.4", r["errmsg"]) and "not allow to access from your ip" in r["errmsg"]


def test_45009_fault_and_custom_errmsg(client, wx):
    add_fault(client, path="message/*", errcode=45009, errmsg="api freq out of limit", count=1)
    tok = wx.get()
    r = client.post("/cgi-bin/message/send", params={"access_token": tok}, json={}).json()
    assert r == {"errcode": 45009, "errmsg": "api freq out of limit"}
    assert client.get("/cgi-bin/department/simplelist", params={"access_token": tok}).json()["errcode"] == 0


def test_http_500(client, wx):
    add_fault(client, path="gettoken", kind="http500", count=1)
    r = client.get("/cgi-bin/gettoken", params={"corpid": "x", "corpsecret": "y"})
    assert r.status_code == 500 and "json" not in r.headers["content-type"]
    assert wx.get()


def test_share_of_calls(client, sim, wx):
    add_fault(client, path="user/get", errcode=-1, ratio=0.25, seed=42)
    tok, uid = wx.get(), first_user(sim)
    codes = [
        client.get("/cgi-bin/user/get", params={"access_token": tok, "userid": uid}).json()["errcode"]
        for _ in range(400)
    ]
    share = codes.count(-1) / 400
    assert 0.18 < share < 0.32
    assert set(codes) == {0, -1}
    fault = client.get("/sim/faults").json()["faults"][0]
    assert fault["fired"] == codes.count(-1)


def test_mix_of_faults(client, sim, wx):
    add_fault(
        client,
        path="user/get",
        ratio=1.0,
        count=60,
        seed=3,
        choices=[{"errcode": -1}, {"kind": "http500"}, {"errcode": 45009}, {"errcode": 42001}],
    )
    uid = first_user(sim)
    seen = set()
    for _ in range(60):
        r = client.get("/cgi-bin/user/get", params={"access_token": wx.get(), "userid": uid})
        seen.add(r.status_code if r.status_code != 200 else r.json()["errcode"])
    assert seen == {-1, 500, 45009, 42001}


def test_latency(client, wx):
    add_fault(client, path="department/simplelist", kind="latency", latency_ms=150, count=1)
    tok = wx.get()
    t0 = time.perf_counter()
    assert client.get("/cgi-bin/department/simplelist", params={"access_token": tok}).json()["errcode"] == 0
    assert time.perf_counter() - t0 >= 0.15
    call = client.get("/sim/calls", params={"api": "department/simplelist"}).json()["calls"][0]
    assert call["latency_ms"] == 150 and call["ms"] >= 150


def test_timeout_holds_longer_than_the_client_waits():
    cfg = make_config()
    app = create_app(cfg)
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=0.3) as c:
        c.post("/sim/faults", json={"path": "gettoken", "kind": "timeout", "hold_seconds": 1.0, "count": 1})
        with pytest.raises(httpx.ReadTimeout):
            c.get("/cgi-bin/gettoken", params={"corpid": cfg.corp_id, "corpsecret": cfg.app_secret})
        ok = c.get("/cgi-bin/gettoken", params={"corpid": cfg.corp_id, "corpsecret": cfg.app_secret}).json()
        assert ok["errcode"] == 0
        time.sleep(0.8)  # the held request finishes and is logged
        held = c.get("/sim/calls", params={"api": "gettoken"}).json()["calls"][0]
        assert held["fault"] == "timeout" and held["status"] == 504 and held["ms"] >= 950  # the event loop's clock


def test_fault_specs_are_validated(client):
    for spec, word in (
        ({"kind": "boom"}, "kind"),
        ({"errcode": "x"}, "errcode"),
        ({"errcode": -1, "count": 0}, "count"),
        ({"errcode": -1, "ratio": 2}, "ratio"),
        ({"kind": "timeout", "hold_seconds": 3600}, "hold"),
        ({"kind": "latency"}, "latency_ms"),
    ):
        r = client.post("/sim/faults", json=spec)
        assert r.status_code == 400 and word in r.json()["message"], spec
    f = add_fault(client, errcode=-1)
    assert client.delete(f"/sim/faults/{f['id']}").json() == {"removed": f["id"]}
    assert client.delete(f"/sim/faults/{f['id']}").status_code == 404
    add_fault(client, errcode=-1)
    assert client.delete("/sim/faults").json() == {"faults": []}


def test_call_log_masks_secrets_and_resets(client, sim, wx):
    tok = wx.get()
    code = client.post("/sim/oauth/code", json={"userid": first_user(sim)}).json()["code"]
    client.get("/cgi-bin/auth/getuserinfo", params={"access_token": tok, "code": code})
    log = client.get("/sim/calls").json()
    text = str(log)
    assert tok not in text and code not in text and sim.cfg.app_secret not in text
    getinfo = [c for c in log["calls"] if c["api"] == "auth/getuserinfo"][0]
    assert (
        getinfo["params"]["access_token"].startswith("****") and getinfo["token"] == "app" and getinfo["errcode"] == 0
    )
    summary = client.get("/sim/calls/summary").json()
    assert summary["apis"]["gettoken"]["calls"] == 1
    assert client.delete("/sim/calls").json()["cleared"] is True
    assert client.get("/sim/calls").json()["calls"] == []
    since = client.get("/sim/calls", params={"since": 1}).json()
    assert since["total"] == 2


def test_the_call_log_rotates_but_counts_stay_exact():
    from starlette.testclient import TestClient

    cfg = make_config(call_log_max=5)
    with TestClient(create_app(cfg)) as c:
        for _ in range(8):
            c.get("/cgi-bin/gettoken", params={"corpid": cfg.corp_id, "corpsecret": "wrong"})
        log = c.get("/sim/calls").json()
        assert log["kept"] == 5 and log["total"] == 8 and [x["seq"] for x in log["calls"]] == [4, 5, 6, 7, 8]
        assert c.get("/sim/calls/summary").json() == {
            "total": 8,
            "apis": {"gettoken": {"calls": 8, "errors": {"40001": 8}, "faults": 0}},
        }
