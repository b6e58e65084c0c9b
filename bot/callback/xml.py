"""Safe parsing of WeCom's callback XML, and building passive-reply XML.

WeCom never sends a DTD, so any DOCTYPE or ENTITY declaration is refused before the parser
sees it: no external entities (XXE) and no entity expansion (billion laughs).

Nearly every document WeCom sends is one flat shape: `<xml>` holding leaf elements, each a
CDATA section or plain text (the envelope, clicks, texts, most events). That shape is read by
one strict regular grammar at a fraction of the cost of expat + xmltodict. The grammar admits no
`<!` but CDATA and no `&`, so no declaration or entity can pass it. Anything outside it
(nesting, repeats, attributes, comments, an XML declaration, entities, CR line ends, characters
XML forbids) goes to the full parser, with the DTD check first: the result is the same dict
xmltodict gives, or the same refusal."""

from __future__ import annotations

import re

import xmltodict

MAX_BODY = 64 * 1024  # WeCom's callback envelopes are well under 4 KiB

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)

# The flat shape. XML whitespace is exactly space, tab and newline here (CR is refused below,
# since XML would rewrite it); names are ASCII; a value is one CDATA section, which ends at the
# first `]]>` (the unrolled loop finds it without backtracking), or text without markup or
# entity references.
_OPEN = re.compile(r"[ \t\n]*<xml>")
_LEAF = re.compile(
    r"[ \t\n]*<([A-Za-z_][A-Za-z0-9_]*)>"
    r"(?:<!\[CDATA\[([^\]]*(?:\](?!\]>)[^\]]*)*)\]\]>|([^<&]*))</\1>"
)
_CLOSE = re.compile(r"[ \t\n]*</xml>[ \t\n]*")
# The only bytes a flat document holds. Control characters (XML forbids them) and CR (XML
# rewrites it) send a document to the full parser, as do U+FFFE/U+FFFF (EF BF BE/BF).
_FLAT_BYTES = bytes(range(0x20, 0x100)) + b"\t\n"


class XMLError(ValueError):
    pass


def _parse_flat(text: str) -> dict | None:
    """The children of a flat `<xml>` document, or None if `text` is not exactly that shape.
    The caller has checked the characters (see `_FLAT_BYTES`)."""
    m = _OPEN.match(text)
    if m is None:
        return None
    out: dict = {}
    pos, leaf = m.end(), _LEAF.match
    while (m := leaf(text, pos)) is not None:
        name, cdata, plain = m.groups()
        if cdata is None:
            if "]]>" in plain:  # XML forbids it in text
                return None
            cdata = plain
        if name in out:  # a repeat: xmltodict makes a list
            return None
        out[name] = cdata.strip() or None  # xmltodict's strip_whitespace
        pos = m.end()
    if not out or _CLOSE.fullmatch(text, pos) is None:
        return None
    return out


def parse(data: bytes | str) -> dict:
    """The children of the root element as a dict (strings, nested dicts, lists for repeats)."""
    if isinstance(data, str):
        try:
            raw = data.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: no XML can carry it
            raise XMLError("not well-formed XML (invalid character)") from None
        text = data
    else:
        raw = data
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = None
    if (
        text is not None
        and not raw.translate(None, _FLAT_BYTES)
        and b"\xef\xbf\xbe" not in raw
        and b"\xef\xbf\xbf" not in raw
    ):
        flat = _parse_flat(text)
        if flat is not None:
            return flat
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


# What XML 1.0 cannot carry at all, escaped or not: C0 controls but tab/LF/CR, lone
# surrogates, U+FFFE and U+FFFF. One such character makes the whole reply unreadable to WeCom.
_XML_FORBIDDEN = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_safe(value: str) -> str:
    """`value` without the characters XML forbids (used for every reply and card text)."""
    return _XML_FORBIDDEN.sub("", value)


def cdata(value: str) -> str:
    return "<![CDATA[" + xml_safe(str(value)).replace("]]>", "]]]]><![CDATA[>") + "]]>"


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
