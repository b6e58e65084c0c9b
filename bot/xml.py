"""Safe parsing of WeCom's callback XML, and building passive-reply XML.

WeCom never sends a DTD, so any DOCTYPE or ENTITY declaration is refused before the parser
sees it: no external entities (XXE) and no entity expansion (billion laughs)."""
from __future__ import annotations

import re

import xmltodict

MAX_BODY = 64 * 1024  # WeCom's callback envelopes are well under 4 KiB

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)


class XMLError(ValueError):
    pass


def parse(data: bytes | str) -> dict:
    """The children of the root element as a dict (strings, nested dicts, lists for repeats)."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if _DTD.search(raw):
        raise XMLError("XML with a DOCTYPE or ENTITY declaration is refused")
    try:
        doc = xmltodict.parse(raw, disable_entities=True)
    except Exception as e:  # expat errors, empty documents
        raise XMLError(f"not well-formed XML ({e})") from None
    if not isinstance(doc, dict) or len(doc) != 1:
        raise XMLError("expected one root element")
    (root,) = doc.values()
    if not isinstance(root, dict):
        raise XMLError("the root element has no children")
    return root


def cdata(value: str) -> str:
    return "<![CDATA[" + str(value).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def element(name: str, value) -> str:
    if isinstance(value, dict):
        return f"<{name}>" + "".join(element(k, v) for k, v in value.items()) + f"</{name}>"
    if isinstance(value, list):
        return "".join(element(name, v) for v in value)
    if isinstance(value, int) and not isinstance(value, bool):
        return f"<{name}>{value}</{name}>"
    return f"<{name}>{cdata(value)}</{name}>"


def document(fields: dict) -> str:
    return "<xml>" + "".join(element(k, v) for k, v in fields.items()) + "</xml>"
