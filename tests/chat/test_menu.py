"""The app menu: the data file, WeCom's rules, `wqbot menu show|push|diff` (respx at WeCom's edge)."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from bot.cli import build_parser
from bot.menus import MENU_FILE, MenuError, build, load, render, validate
from bot.menus import cli as menu_cli
from bot.menus.diff import diff

API = "http://wecom.test"


def wqbot(argv: list[str]) -> int:
    """`wqbot ARGV` as the console script parses it, without its process-wide logging set-up."""
    args = build_parser().parse_args(argv)
    assert args.command == "menu"
    return menu_cli.main(args)


def test_the_console_script_dispatches_menu(settings, capsys):
    import logging

    from bot.cli import COMMANDS
    from bot.cli import main as console

    assert COMMANDS["menu"] == "bot.menus.cli:main"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        assert console(["menu", "show"]) == 0
    finally:
        root.handlers[:], _ = saved[0], root.setLevel(saved[1])
    assert json.loads(capsys.readouterr().out) == build(settings)


# -- the shipped file ----------------------------------------------------------------------------


def test_shipped_menu_is_valid_and_has_the_contract_buttons(settings):
    menu = build(settings)
    by_name = {b["name"]: b for b in menu["button"]}
    assert by_name["待我处理"] == {"type": "click", "name": "待我处理", "key": "pending"}
    assert by_name["帮助"] == {"type": "click", "name": "帮助", "key": "help"}
    view = by_name["进入微签"]
    assert view["type"] == "view"
    assert view["url"] == "https://wqbot.example.com/oauth/h5?next=%2Fpages%2Findex%2Findex"


def test_view_paths_expand_to_the_oauth_entry_and_urls_stay(settings):
    data = {
        "button": [
            {"name": "首页", "type": "view", "url": "/pages/index/index?tab=2&x=中"},
            {"name": "官网", "type": "view", "url": "https://www.example.com/a?b=1"},
        ]
    }
    assert validate(data, settings) == []
    urls = [b["url"] for b in render(data, settings)["button"]]
    parts = urlsplit(urls[0])
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == "https://wqbot.example.com/oauth/h5"
    assert parse_qs(parts.query) == {"next": ["/pages/index/index?tab=2&x=中"]}
    assert urls[1] == "https://www.example.com/a?b=1"


def check_menu_create_schema(menu: dict) -> None:
    """WeCom's menu/create body (docs/wecom.md, "Menus"), written out as the checks its server makes."""
    assert set(menu) == {"button"} and 1 <= len(menu["button"]) <= 3
    fields = {
        "click": {"key"},
        "view": {"url"},
        "view_miniprogram": {"appid", "pagepath"},
        **{
            t: {"key"}
            for t in (
                "scancode_push",
                "scancode_waitmsg",
                "pic_sysphoto",
                "pic_photo_or_album",
                "pic_weixin",
                "location_select",
            )
        },
    }

    def leaf(b, name_limit):
        assert isinstance(b["name"], str) and 0 < len(b["name"].encode()) <= name_limit
        assert b["type"] in fields and set(b) == {"type", "name"} | fields[b["type"]]
        if "key" in b:
            assert 0 < len(b["key"].encode()) <= 128
        if "url" in b:
            assert b["url"].startswith(("http://", "https://")) and len(b["url"].encode()) <= 1024

    for b in menu["button"]:
        if "sub_button" in b:
            assert set(b) == {"name", "sub_button"} and 1 <= len(b["sub_button"]) <= 5
            assert 0 < len(b["name"].encode()) <= 16
            for s in b["sub_button"]:
                leaf(s, 40)
        else:
            leaf(b, 16)


def test_menu_show_prints_exactly_the_menu_create_body(settings, capsys):
    assert wqbot(["menu", "show"]) == 0
    out = capsys.readouterr().out
    printed = json.loads(out)
    assert printed == build(settings)
    check_menu_create_schema(printed)


def test_a_group_renders_in_menu_create_shape(settings):
    data = {
        "button": [
            {"name": "待我处理", "type": "click", "key": "pending"},
            {
                "name": "更多",
                "sub_button": [
                    {"name": "进入微签", "type": "view", "url": "/pages/index/index"},
                    {"name": "扫码", "type": "scancode_waitmsg", "key": "scan"},
                    {"name": "小程序", "type": "view_miniprogram", "appid": "wx123", "pagepath": "pages/index"},
                ],
            },
        ]
    }
    assert validate(data, settings) == []
    menu = render(data, settings)
    check_menu_create_schema(menu)
    assert list(menu["button"][1]) == ["name", "sub_button"]


def test_cli_parser_has_the_menu_actions():
    p = build_parser()
    for action in ("show", "push", "diff"):
        assert p.parse_args(["menu", action]).action == action
    with pytest.raises(SystemExit):
        p.parse_args(["menu", "delete"])


# -- WeCom's rules, one test each, each message naming the entry --------------------------------


def click(name, key):
    return {"name": name, "type": "click", "key": key}


def problems(settings, buttons):
    return validate({"button": buttons}, settings)


def test_at_least_one_top_level_button(settings):
    assert problems(settings, []) == ["no buttons: declare 1 to 3 [[button]] entries"]
    assert validate({}, settings) == ["no buttons: declare 1 to 3 [[button]] entries"]


def test_at_most_three_top_level_buttons(settings):
    out = problems(settings, [click("一", "a"), click("二", "b"), click("三", "c"), click("四", "d")])
    assert out == ['4 top-level buttons, WeCom allows 3: remove button[3] "四"']


def test_top_level_name_at_most_16_bytes(settings):
    assert problems(settings, [click("待我处理的任务", "a")]) == [
        'button[0] "待我处理的任务": name is 21 bytes, WeCom allows 16'
    ]
    assert problems(settings, [click("一二三四五", "a")]) == []  # 15 bytes
    assert problems(settings, [click("abcdefghijklmnop", "a")]) == []  # 16 bytes


def test_sub_button_name_at_most_40_bytes(settings):
    long = "签署记录" + "很长" * 4 + "的名字"  # 15 characters, 45 bytes
    assert (
        problems(settings, [{"name": "更多", "sub_button": [click("签署记录" + "很长" * 4 + "的a", "d")]}]) == []
    )  # 40
    out = problems(
        settings,
        [click("甲", "a"), {"name": "更多", "sub_button": [click("一", "b"), click("二", "c"), click(long, "d")]}],
    )
    assert out == [f'button[1].sub_button[2] "{long}": name is 45 bytes, WeCom allows 40']


def test_name_missing_or_blank(settings):
    assert problems(settings, [{"type": "click", "key": "a"}]) == ["button[0]: name is missing"]
    assert problems(settings, [click("  ", "a")]) == ['button[0] "  ": name must be non-empty text']
    assert problems(settings, [{"name": 7, "type": "click", "key": "a"}]) == ["button[0]: name must be non-empty text"]


def test_sub_menu_has_one_to_five_entries(settings):
    six = [click(f"项{i}", f"k{i}") for i in range(6)]
    assert problems(settings, [{"name": "更多", "sub_button": six}]) == [
        'button[0] "更多": 6 sub-buttons, WeCom allows 5'
    ]
    assert problems(settings, [{"name": "更多", "sub_button": []}]) == [
        'button[0] "更多": sub_button is empty: a group needs 1 to 5 entries'
    ]
    assert problems(settings, [{"name": "更多", "sub_button": six[:5]}]) == []


def test_two_levels_only(settings):
    out = problems(settings, [{"name": "更多", "sub_button": [{"name": "再多", "sub_button": [click("深", "x")]}]}])
    assert out == ['button[0].sub_button[0] "再多": menus have two levels only: a sub-button cannot have sub_button']


def test_group_has_no_type(settings):
    out = problems(settings, [{"name": "更多", "type": "click", "sub_button": [click("一", "a")]}])
    assert out == [
        'button[0] "更多": a button with sub_button is a group and has no type: remove type (or the sub_button)'
    ]


def test_type_missing_or_unknown(settings):
    assert problems(settings, [{"name": "甲", "key": "a"}])[0].startswith(
        'button[0] "甲": type is missing (one of click, '
    )
    out = problems(settings, [click("甲", "a"), {"name": "乙", "type": "link", "url": "https://x.example"}])
    assert out[0].startswith("button[1] \"乙\": type 'link' is not a WeCom menu type (one of click, ")


def test_click_needs_key_and_view_needs_url(settings):
    assert problems(settings, [{"name": "甲", "type": "click"}]) == ['button[0] "甲": a click button needs key']
    assert problems(settings, [{"name": "乙", "type": "view"}]) == ['button[0] "乙": a view button needs url']
    assert problems(settings, [{"name": "丙", "type": "scancode_push", "key": ""}]) == [
        'button[0] "丙": key must be non-empty text'
    ]
    assert problems(settings, [{"name": "丁", "type": "view_miniprogram", "appid": "wx1"}]) == [
        'button[0] "丁": a view_miniprogram button needs pagepath'
    ]


def test_fields_that_do_not_belong(settings):
    assert problems(settings, [{"name": "甲", "type": "click", "key": "a", "url": "/x"}]) == [
        'button[0] "甲": a click button has key, not url'
    ]
    assert problems(settings, [{"name": "甲", "type": "click", "kye": "a"}]) == [
        'button[0] "甲": a click button has key, not kye',
        'button[0] "甲": a click button needs key',
    ]
    assert validate({"button": [click("甲", "a")], "buttons": []}, settings) == [
        "unknown top-level field(s) buttons: only [[button]] entries belong here"
    ]


def test_key_at_most_128_bytes(settings):
    assert problems(settings, [click("甲", "k" * 128)]) == []
    assert problems(settings, [click("甲", "键" * 43)]) == ['button[0] "甲": key is 129 bytes, WeCom allows 128']


def test_keys_are_unique(settings):
    out = problems(settings, [click("甲", "help"), {"name": "更多", "sub_button": [click("乙", "help")]}])
    assert out == ['button[1].sub_button[0] "乙": key \'help\' is already used by button[0] "甲": keys must be unique']


def test_url_at_most_1024_bytes_after_expansion(settings):
    ok = "https://x.example/" + "a" * (1024 - 18)
    assert problems(settings, [{"name": "甲", "type": "view", "url": ok}]) == []
    assert problems(settings, [{"name": "甲", "type": "view", "url": ok + "b"}]) == [
        'button[0] "甲": url is 1025 bytes, WeCom allows 1024'
    ]
    # a path grows when it becomes the /oauth/h5 link: measured as uploaded
    path = "/" + "p" * 990
    out = problems(settings, [{"name": "甲", "type": "view", "url": path}])
    assert out == [
        'button[0] "甲": url is 1033 bytes after expanding the path into the /oauth/h5 link, WeCom allows 1024'
    ]


def test_url_must_be_a_path_or_http_url(settings):
    for bad in ("pages/index", "//evil.example/x", "javascript:alert(1)", "ftp://x.example"):
        out = problems(settings, [{"name": "甲", "type": "view", "url": bad}])
        assert out == [f'button[0] "甲": url must be a 微签 H5 path (/pages/…) or an http(s):// URL, not {bad!r}']
    assert problems(settings, [{"name": "甲", "type": "view", "url": "/pages/a b"}]) == [
        'button[0] "甲": url contains a space or line break'
    ]


def test_every_problem_is_reported_at_once(settings):
    out = problems(settings, [click("待我处理的全部任务", "k" * 200), click("乙", "k" * 200)])
    assert len(out) == 4  # the first name too long, both keys too long, the second key a repeat
    assert any("name is 27 bytes" in p for p in out)


def test_entry_must_be_a_table(settings):
    assert problems(settings, ["帮助"]) == ["button[0]: must be a table with name and type"]
    assert validate([1, 2], settings) == ["the menu must be a table with [[button]] entries"]


def test_bad_toml_names_the_file_and_line(tmp_path):
    f = tmp_path / "menu.toml"
    f.write_text('[[button]]\nname = "帮助\ntype = "click"\n', encoding="utf-8")
    with pytest.raises(MenuError) as e:
        load(f)
    assert str(f) in str(e.value) and "line 2" in e.value.problems[0]
    with pytest.raises(MenuError, match="menu file not found"):
        load(tmp_path / "nope.toml")


def test_build_raises_with_every_problem(settings, tmp_path):
    f = tmp_path / "menu.toml"
    f.write_text('[[button]]\nname = "待我处理的全部任务"\ntype = "click"\n', encoding="utf-8")
    with pytest.raises(MenuError) as e:
        build(settings, f)
    assert e.value.problems == [
        'button[0] "待我处理的全部任务": name is 27 bytes, WeCom allows 16',
        'button[0] "待我处理的全部任务": a click button needs key',
    ]


def test_shipped_file_is_the_default():
    assert MENU_FILE.name == "menu.toml" and load()["button"]


# -- diff ----------------------------------------------------------------------------------------


def test_diff_ignores_what_menu_get_adds(settings):
    ours = build(settings)
    theirs = {"button": [{**b, "sub_button": []} for b in ours["button"]]}
    assert diff(theirs, ours) == []


def test_diff_shows_changes_line_by_line(settings):
    ours = build(settings)
    theirs = {
        "button": [
            {"type": "click", "name": "待我处理", "key": "pending", "sub_button": []},
            {"type": "view", "name": "进入微签", "url": "https://old.example.com/", "sub_button": []},
            {"name": "更多", "sub_button": [{"type": "click", "name": "旧", "key": "old", "sub_button": []}]},
        ]
    }
    out = diff(theirs, ours)
    assert out[0] == "  待我处理  click  pending"
    assert "- 进入微签  view  https://old.example.com/" in out
    assert "+ 进入微签  view  https://wqbot.example.com/oauth/h5?next=%2Fpages%2Findex%2Findex" in out
    assert "- 更多 ▸" in out and "- 更多 › 旧  click  old" in out
    assert out[-1] == "+ 帮助  click  help"


# -- push / diff against WeCom (respx) -----------------------------------------------------------


@pytest.fixture
def wecom():
    from bot.wecom import reset_clients

    reset_clients()
    with respx.mock(base_url=API, assert_all_called=False) as mock:
        mock.get("/cgi-bin/gettoken").respond(json={"errcode": 0, "access_token": "TOKEN-menu", "expires_in": 7200})
        yield mock
    reset_clients()


def test_menu_push_uploads_the_shown_menu(settings, store, wecom, capsys):
    route = wecom.post("/cgi-bin/menu/create").respond(json={"errcode": 0, "errmsg": "ok"})
    assert wqbot(["menu", "push"]) == 0
    assert route.call_count == 1
    req = route.calls.last.request
    assert req.url.params["agentid"] == str(settings.wecom_agent_id)
    assert req.url.params["access_token"] == "TOKEN-menu"
    assert json.loads(req.content) == build(settings)
    out = capsys.readouterr().out
    assert "menu pushed to agent 1000002: 3 top-level buttons" in out and "TOKEN" not in out


def test_menu_push_reports_wecom_refusal(settings, store, wecom, capsys):
    wecom.post("/cgi-bin/menu/create").respond(json={"errcode": 40054, "errmsg": "invalid sub button url domain"})
    assert wqbot(["menu", "push"]) == 1
    err = capsys.readouterr().err
    assert "WeCom refused" in err and "40054" in err


def test_menu_push_refuses_a_bad_file_before_calling_wecom(settings, store, wecom, capsys, tmp_path):
    f = tmp_path / "menu.toml"
    f.write_text('[[button]]\nname = "帮助"\ntype = "click"\nkey = "help"\n' * 4, encoding="utf-8")
    route = wecom.post("/cgi-bin/menu/create").respond(json={"errcode": 0})
    args = build_parser().parse_args(["menu", "push"])
    args.file = f
    assert menu_cli.main(args) == 2
    assert route.call_count == 0
    err = capsys.readouterr().err
    assert "4 top-level buttons, WeCom allows 3" in err
    assert 'button[1] "帮助": key \'help\' is already used by button[0] "帮助"' in err


def test_menu_diff_when_wecom_has_no_menu(settings, store, wecom, capsys):
    wecom.get("/cgi-bin/menu/get").respond(json={"errcode": 46003, "errmsg": "menu no exist"})
    assert wqbot(["menu", "diff"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "WeCom has no menu for agent 1000002; `wqbot menu push` would make it:"
    assert out[1:] == [
        "+ 待我处理  click  pending",
        "+ 进入微签  view  https://wqbot.example.com/oauth/h5?next=%2Fpages%2Findex%2Findex",
        "+ 帮助  click  help",
    ]


def test_menu_diff_when_equal(settings, store, wecom, capsys):
    current = {"button": [{**b, "sub_button": []} for b in build(settings)["button"]]}
    route = wecom.get("/cgi-bin/menu/get").respond(json={"errcode": 0, "errmsg": "ok", **current})
    assert wqbot(["menu", "diff"]) == 0
    assert route.calls.last.request.url.params["agentid"] == "1000002"
    assert capsys.readouterr().out.strip() == "WeCom already has this menu for agent 1000002."


def test_menu_diff_when_different(settings, store, wecom, capsys):
    wecom.get("/cgi-bin/menu/get").respond(
        json={"errcode": 0, "button": [{"type": "click", "name": "帮助", "key": "help", "sub_button": []}]}
    )
    assert wqbot(["menu", "diff"]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("WeCom has a different menu for agent 1000002")
    assert "  帮助  click  help" in out and "+ 待我处理  click  pending" in out


def test_menu_diff_reports_other_errors(settings, store, wecom, capsys):
    wecom.get("/cgi-bin/menu/get").respond(
        json={"errcode": 60020, "errmsg": "not allow to access from your ip, from ip: 1.2.3.4"}
    )
    assert wqbot(["menu", "diff"]) == 1
    assert "60020" in capsys.readouterr().err


def test_menu_diff_survives_transport_errors(settings, store, wecom, capsys, monkeypatch):
    from bot.wecom import client_for

    monkeypatch.setattr(client_for(settings), "_sleep", lambda s: None)
    wecom.get("/cgi-bin/menu/get").mock(side_effect=httpx.ConnectError("refused"))
    assert wqbot(["menu", "diff"]) == 1
    err = capsys.readouterr().err
    assert "could not reach WeCom" in err and "/cgi-bin/menu/get" in err
