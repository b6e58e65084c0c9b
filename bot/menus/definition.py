"""The app menu as data: load `menu.toml`, check it against WeCom's rules, build menu/create JSON.

    menu = build(settings)          # {"button": [...]}, exactly what menu/create receives
    problems = validate(data, settings)   # [] or one message per problem, naming the entry

WeCom refuses a bad menu with one bare errcode (40016-40027) and no hint which button is wrong,
so every rule is checked here first and each message points at the entry by its position and
name, e.g. `button[1].sub_button[2] "签署记录": name is 45 bytes, WeCom allows 40`. Positions
count from 0, in file order.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from bot.auth.links import h5_entry
from settings import Settings

MENU_FILE = Path(__file__).with_name("menu.toml")

MAX_TOP, MAX_SUB = 3, 5
TOP_NAME_BYTES, SUB_NAME_BYTES = 16, 40
KEY_BYTES, URL_BYTES = 128, 1024

# type -> the fields it carries besides name/type (docs/wecom.md, "Menus")
KEYED_TYPES = (
    "click",
    "scancode_push",
    "scancode_waitmsg",
    "pic_sysphoto",
    "pic_photo_or_album",
    "pic_weixin",
    "location_select",
)
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    **{t: ("key",) for t in KEYED_TYPES},
    "view": ("url",),
    "view_miniprogram": ("appid", "pagepath"),
}


class MenuError(Exception):
    """The menu file cannot be uploaded; `problems` lists every reason, one entry each."""

    def __init__(self, problems: list[str], source: str = ""):
        self.problems = problems
        self.source = source
        head = f"{source}: " if source else ""
        super().__init__(head + "; ".join(problems))


def load(path: str | Path = MENU_FILE) -> dict:
    """The parsed menu file. A TOML syntax error becomes a MenuError naming the file and line."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise MenuError([f"menu file not found: {p}"], str(p)) from None
    except tomllib.TOMLDecodeError as e:
        raise MenuError([f"not valid TOML: {e}"], str(p)) from None


def _nbytes(s: str) -> int:
    return len(s.encode("utf-8"))


def _label(where: str, entry) -> str:
    name = entry.get("name") if isinstance(entry, dict) else None
    return f'{where} "{name}"' if isinstance(name, str) and name else where


def _is_path(url: str) -> bool:
    return url.startswith("/") and not url.startswith("//")


def expand_url(url: str, settings: Settings) -> str:
    """A path is a page of the 微签 H5, opened logged in through /oauth/h5; a URL stays as is."""
    return h5_entry(settings, url) if _is_path(url) else url


def validate(data, settings: Settings) -> list[str]:
    """Every way `data` (the parsed menu file) breaks WeCom's menu rules; [] when it is fine."""
    problems: list[str] = []
    if not isinstance(data, dict):
        return ["the menu must be a table with [[button]] entries"]
    extra = sorted(set(data) - {"button"})
    if extra:
        problems.append(f"unknown top-level field(s) {', '.join(extra)}: only [[button]] entries belong here")
    buttons = data.get("button")
    if not isinstance(buttons, list) or not buttons:
        problems.append("no buttons: declare 1 to 3 [[button]] entries")
        return problems
    if len(buttons) > MAX_TOP:
        names = ", ".join(_label(f"button[{i}]", b) for i, b in enumerate(buttons[MAX_TOP:], MAX_TOP))
        problems.append(f"{len(buttons)} top-level buttons, WeCom allows {MAX_TOP}: remove {names}")
    keys: dict[str, str] = {}
    for i, button in enumerate(buttons):
        where = f"button[{i}]"
        if not isinstance(button, dict):
            problems.append(f"{where}: must be a table with name and type")
            continue
        if "sub_button" in button:
            problems += _check_group(where, button, keys, settings)
        else:
            problems += _check_action(where, button, TOP_NAME_BYTES, keys, settings)
    return problems


def _check_name(label: str, entry: dict, limit: int) -> list[str]:
    name = entry.get("name")
    if name is None:
        return [f"{label}: name is missing"]
    if not isinstance(name, str) or not name.strip():
        return [f"{label}: name must be non-empty text"]
    n = _nbytes(name)
    if n > limit:
        return [f"{label}: name is {n} bytes, WeCom allows {limit}"]
    return []


def _check_group(where: str, group: dict, keys: dict, settings: Settings) -> list[str]:
    label = _label(where, group)
    problems = _check_name(label, group, TOP_NAME_BYTES)
    if "type" in group:
        problems.append(
            f"{label}: a button with sub_button is a group and has no type: remove type (or the sub_button)"
        )
    extra = sorted(set(group) - {"name", "sub_button", "type"})
    if extra:
        problems.append(f"{label}: a group has only name and sub_button, not {', '.join(extra)}")
    subs = group.get("sub_button")
    if not isinstance(subs, list) or not subs:
        problems.append(f"{label}: sub_button is empty: a group needs 1 to {MAX_SUB} entries")
        return problems
    if len(subs) > MAX_SUB:
        problems.append(f"{label}: {len(subs)} sub-buttons, WeCom allows {MAX_SUB}")
    for j, sub in enumerate(subs):
        sub_where = f"{where}.sub_button[{j}]"
        if not isinstance(sub, dict):
            problems.append(f"{sub_where}: must be a table with name and type")
            continue
        if "sub_button" in sub:
            problems.append(
                f"{_label(sub_where, sub)}: menus have two levels only: a sub-button cannot have sub_button"
            )
            continue
        problems += _check_action(sub_where, sub, SUB_NAME_BYTES, keys, settings)
    return problems


def _check_action(where: str, entry: dict, name_limit: int, keys: dict, settings: Settings) -> list[str]:
    label = _label(where, entry)
    problems = _check_name(label, entry, name_limit)
    kind = entry.get("type")
    if kind is None:
        return problems + [f"{label}: type is missing (one of {', '.join(TYPE_FIELDS)})"]
    if kind not in TYPE_FIELDS:
        return problems + [f"{label}: type {kind!r} is not a WeCom menu type (one of {', '.join(TYPE_FIELDS)})"]
    wanted = TYPE_FIELDS[kind]
    extra = sorted(set(entry) - {"name", "type", *wanted})
    if extra:
        problems.append(f"{label}: a {kind} button has {', '.join(wanted)}, not {', '.join(extra)}")
    missing = False
    for fld in wanted:
        value = entry.get(fld)
        if value is None:
            problems.append(f"{label}: a {kind} button needs {fld}")
        elif not isinstance(value, str) or not value.strip():
            problems.append(f"{label}: {fld} must be non-empty text")
        else:
            continue
        missing = True
    if missing:
        return problems
    if kind in KEYED_TYPES:
        key = entry["key"]
        n = _nbytes(key)
        if n > KEY_BYTES:
            problems.append(f"{label}: key is {n} bytes, WeCom allows {KEY_BYTES}")
        if key in keys:
            problems.append(f"{label}: key {key!r} is already used by {keys[key]}: keys must be unique")
        else:
            keys[key] = label
    elif kind == "view":
        url = entry["url"]
        if any(c.isspace() for c in url):
            problems.append(f"{label}: url contains a space or line break")
        elif not (_is_path(url) or url.startswith(("https://", "http://"))):
            problems.append(f"{label}: url must be a 微签 H5 path (/pages/…) or an http(s):// URL, not {url!r}")
        else:
            n = _nbytes(expand_url(url, settings))
            if n > URL_BYTES:
                via = " after expanding the path into the /oauth/h5 link" if _is_path(url) else ""
                problems.append(f"{label}: url is {n} bytes{via}, WeCom allows {URL_BYTES}")
    return problems


def render(data: dict, settings: Settings) -> dict:
    """menu/create JSON for an already validated `data`."""

    def action(entry: dict) -> dict:
        out = {"type": entry["type"], "name": entry["name"]}
        for fld in TYPE_FIELDS[entry["type"]]:
            out[fld] = expand_url(entry[fld], settings) if fld == "url" else entry[fld]
        return out

    buttons = []
    for b in data["button"]:
        if "sub_button" in b:
            buttons.append({"name": b["name"], "sub_button": [action(s) for s in b["sub_button"]]})
        else:
            buttons.append(action(b))
    return {"button": buttons}


def build(settings: Settings, path: str | Path = MENU_FILE) -> dict:
    """Load, check and render the menu file; MenuError lists every problem."""
    data = load(path)
    problems = validate(data, settings)
    if problems:
        raise MenuError(problems, str(path))
    return render(data, settings)


def click_keys(menu: dict) -> list[str]:
    """The click keys of a rendered menu, in order."""
    out = []
    for b in menu.get("button", []):
        for entry in b.get("sub_button") or [b]:
            if entry.get("type") == "click" and entry.get("key"):
                out.append(entry["key"])
    return out
