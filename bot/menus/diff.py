"""A short, readable comparison of two menus (ours vs WeCom's menu/get answer).

Each button becomes one line (`进入微签  view  https://…`; a group's entries read
`更多 › 签署记录  click  records`), so a diff of lines shows what a push would change. WeCom's
menu/get adds empty `sub_button` lists and may add fields we never set; those are ignored.
"""

from __future__ import annotations

from difflib import SequenceMatcher

_TARGET_FIELDS = ("key", "url", "appid", "pagepath")


def _describe(entry: dict) -> str:
    target = "  ".join(str(entry[f]) for f in _TARGET_FIELDS if entry.get(f))
    return "  ".join(p for p in (str(entry.get("type", "?")), target) if p)


def lines(menu: dict | None) -> list[str]:
    out = []
    for b in (menu or {}).get("button") or []:
        subs = b.get("sub_button") or []
        if subs:
            out.append(f"{b.get('name', '')} ▸")
            out += [f"{b.get('name', '')} › {s.get('name', '')}  {_describe(s)}" for s in subs]
        else:
            out.append(f"{b.get('name', '')}  {_describe(b)}")
    return out


def diff(current: dict | None, wanted: dict) -> list[str]:
    """Lines prefixed "  " (same), "- " (only in `current`), "+ " (only in `wanted`); [] if equal."""
    a, b = lines(current), lines(wanted)
    if a == b:
        return []
    out = []
    for op, i1, i2, j1, j2 in SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            out += ["  " + x for x in a[i1:i2]]
            continue
        out += ["- " + x for x in a[i1:i2]]
        out += ["+ " + x for x in b[j1:j2]]
    return out
