"""bot.callback.xml.parse: the flat fast path must give exactly what the full parser (expat + xmltodict, DTDs
refused) gives, and refuse exactly what it refuses."""

from __future__ import annotations

import re

import pytest
import xmltodict
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.callback.xml import XMLError, _parse_flat, cdata, document, parse

_DTD = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.I)


def reference(data: bytes | str) -> dict:
    """The parser before the fast path, kept here as the oracle."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if _DTD.search(raw):
        raise XMLError("dtd")
    try:
        doc = xmltodict.parse(raw, disable_entities=True)
    except Exception as e:
        raise XMLError(str(e)) from None
    if not isinstance(doc, dict) or len(doc) != 1:
        raise XMLError("root")
    (root,) = doc.values()
    if not isinstance(root, dict):
        raise XMLError("children")
    return root


def same(data):
    try:
        want = reference(data)
    except XMLError:
        with pytest.raises(XMLError):
            parse(data)
        return None
    got = parse(data)
    assert got == want and list(got) == list(want)  # values and element order
    return got


names = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
clean_values = st.text(alphabet=st.sampled_from(list("ab 中文\t\n+/=.,:>]")), max_size=20)
# Text that stresses the grammar: markup characters, CDATA ends, XML-forbidden and odd whitespace.
rough_values = st.text(
    alphabet=st.sampled_from(list("ab 中文\t\n\r]>[<&!;#x0CDATA\x00\x0b\x1f\u3000\ufffe")), max_size=20
)


@st.composite
def flat_docs(draw):
    """Half are WeCom's flat shape (the fast path must read them), half are anything near it."""
    rough = draw(st.booleans())
    values = rough_values if rough else clean_values
    ws = st.sampled_from(["", " ", "\n", "\t \n"] + (["\r\n"] if rough else []))
    forms = ["cdata", "plain", "empty"] + (["escaped", "split", "raw_cdata"] if rough else [])
    parts = []
    for name in draw(st.lists(names, min_size=0 if rough else 1, max_size=6, unique=not rough)):
        value = draw(values)
        form = draw(st.sampled_from(forms))
        if form == "cdata":
            body = cdata(value)  # our own writer: splits ]]> across sections
        elif form == "raw_cdata":
            body = f"<![CDATA[{value}]]>"  # may be malformed on purpose
        elif form == "plain":
            body = value  # may hold < & ]]> on purpose
        elif form == "escaped":
            body = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        elif form == "split":
            body = f"<![CDATA[{value[:3]}]]>{value[3:6]}<![CDATA[{value[6:]}]]>"
        else:
            body = ""
        parts.append(draw(ws) + f"<{name}>{body}</{name}>")
    prolog = draw(
        st.sampled_from(["", " ", "\n"] + (['<?xml version="1.0" encoding="UTF-8"?>', "\ufeff"] if rough else []))
    )
    root = draw(st.sampled_from(["xml", "root"] if rough else ["xml"]))
    return f"{prolog}<{root}>" + "".join(parts) + draw(ws) + f"</{root}>" + draw(ws)


@settings(max_examples=1500, deadline=None)
@given(flat_docs(), st.booleans())
def test_flat_path_agrees_with_the_full_parser(doc, as_bytes):
    same(doc.encode("utf-8") if as_bytes else doc)


@settings(max_examples=500, deadline=None)
@given(flat_docs(), st.integers(min_value=0, max_value=200), st.sampled_from(["<", ">", "&", "]", "!", "/", "\r", "x"]))
def test_mutated_documents_agree(doc, at, char):
    i = at % (len(doc) + 1)
    same(doc[:i] + char + doc[i:])
    same(doc[:i] + doc[i + 1 :])


def test_wecom_shapes_take_the_fast_path():
    envelope = (
        "<xml><ToUserName><![CDATA[ww1a2b3c4d5e6f7a8b]]></ToUserName>"
        "<Encrypt><![CDATA[UIPhyj131rWU+/=]]></Encrypt><AgentID><![CDATA[1000002]]></AgentID></xml>"
    )
    assert _parse_flat(envelope) == {
        "ToUserName": "ww1a2b3c4d5e6f7a8b",
        "Encrypt": "UIPhyj131rWU+/=",
        "AgentID": "1000002",
    }
    reply = document({"ToUserName": "lisi", "CreateTime": 1700000000, "Content": "帮助\n• 待办"})
    assert _parse_flat(reply) == same(reply)
    # WeCom's pretty-printed form (newlines between elements, element order free)
    assert _parse_flat("<xml>\n <Encrypt><![CDATA[x]]></Encrypt>\n <ToUserName>y</ToUserName>\n</xml>\n") == {
        "Encrypt": "x",
        "ToUserName": "y",
    }


@pytest.mark.parametrize(
    "doc",
    [
        '<!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]><xml><Encrypt>&e;</Encrypt></xml>',
        '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]><xml><Encrypt>&lol;</Encrypt></xml>',
        "<xml><Encrypt>&undeclared;</Encrypt></xml>",
        "<xml><Encrypt><![CDATA[a]]>b</Encrypt></xml>",
        "<xml></xml>",
        "<xml/>",
        "<xml>text</xml>",
        "not xml",
        "",
        "<xml><a>1</a>",
    ],
)
def test_refusals_match(doc):
    assert _parse_flat(doc) is None
    same(doc)
    same(doc.encode())


def test_nested_and_repeated_go_to_the_full_parser():
    doc = "<xml><Items><item><Name>a</Name></item><item><Name>b</Name></item></Items><A>1</A><A>2</A></xml>"
    assert _parse_flat(doc) is None
    assert same(doc) == {"Items": {"item": [{"Name": "a"}, {"Name": "b"}]}, "A": ["1", "2"]}


def test_bytes_that_are_not_utf8_and_lone_surrogates():
    same("<xml><a>中</a></xml>".encode("gbk"))
    with pytest.raises(XMLError):
        parse("<xml><a>\ud800</a></xml>")
