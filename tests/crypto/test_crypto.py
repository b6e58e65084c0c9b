"""Our callback crypto against every verified vector (tests/data/wecom_vectors.json) and against wechatpy."""

from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from bot.crypto import (
    CryptoError,
    InvalidBase64,
    InvalidLength,
    InvalidPadding,
    InvalidReceiveId,
    InvalidSignature,
    WeComCrypto,
    decode_aes_key,
    signature,
)


def _cases(vectors, kind):
    for s in vectors["sets"]:
        for c in s["cases"]:
            if c["kind"] == kind:
                yield s, c


def _crypto(s, c=None):
    return WeComCrypto(s["token"], s["encoding_aes_key"], (c or {}).get("receive_id", s["receive_id"]))


def test_every_set_derives_the_documented_key(vectors):
    for s in vectors["sets"]:
        if "aes_key_hex" in s:
            assert decode_aes_key(s["encoding_aes_key"]).hex() == s["aes_key_hex"], s["name"]


def test_url_verification_vectors(vectors):
    cases = list(_cases(vectors, "verify_url"))
    assert len(cases) >= 4
    for s, c in cases:
        got = _crypto(s).verify_url(c["msg_signature"], c["timestamp"], c["nonce"], c["echostr"])
        assert got == c["expect_plaintext"], c["name"]


def test_post_vectors_decrypt_exactly(vectors):
    cases = list(_cases(vectors, "decrypt_post"))
    assert {c["name"] for _, c in cases} >= {"A-POST", "B-POST", "C-POST", "V2", "V3"}
    for s, c in cases:
        from bot.callback.xml import parse

        encrypt = parse(c["post_body"])["Encrypt"]
        got = _crypto(s).decrypt_message(c["msg_signature"], c["timestamp"], c["nonce"], encrypt)
        assert got == c["expect_plaintext"], c["name"]


def test_encrypt_reproduces_vectors_byte_for_byte(vectors):
    """With the vector's random prefix, encrypting its plaintext yields exactly its ciphertext."""
    checked = 0
    for s, c in (
        list(_cases(vectors, "verify_url"))
        + list(_cases(vectors, "decrypt_post"))
        + list(_cases(vectors, "encrypt_reply"))
    ):
        prefix = bytes.fromhex(c["random_prefix_hex"])
        assert _crypto(s).encrypt(c["expect_plaintext"], prefix) == c["expect_encrypt"], c["name"]
        checked += 1
    assert checked >= 9


def test_one_object_encrypts_message_after_message_as_a_fresh_one_would(vectors):
    """The CBC object is reused between messages (and kept per thread): every ciphertext must be
    what a new object gives, whatever was encrypted before, on any thread."""
    import threading

    def messages(s):
        return [
            (c["expect_plaintext"], bytes.fromhex(c["random_prefix_hex"]))
            for c in s["cases"]
            if "random_prefix_hex" in c
        ]

    s0 = max(vectors["sets"], key=lambda s: len(messages(s)))
    same_set = messages(s0)
    assert len(same_set) >= 3
    shared = _crypto(s0)
    expected = [_crypto(s0).encrypt(text, prefix) for text, prefix in same_set]
    for _ in range(3):
        assert [shared.encrypt(text, prefix) for text, prefix in same_set] == expected
    failures: list[str] = []

    def encrypt_many() -> None:
        for _ in range(200):
            got = [shared.encrypt(text, prefix) for text, prefix in same_set]
            if got != expected:
                failures.append("mismatch")

    threads = [threading.Thread(target=encrypt_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_encrypt_reply_envelope_vectors(vectors):
    for s, c in _cases(vectors, "encrypt_reply"):
        prefix = bytes.fromhex(c["random_prefix_hex"])
        body = _crypto(s).encrypt_reply(c["expect_plaintext"], c["timestamp"], c["nonce"], random_prefix=prefix)
        assert signature(s["token"], c["timestamp"], c["nonce"], c["expect_encrypt"]) == c["expect_signature"]
        assert body == c["reply_body"], c["name"]


@pytest.mark.parametrize(
    "name,error", [("A-GET-wrong-receive-id", InvalidReceiveId), ("A-GET-bad-signature", InvalidSignature)]
)
def test_negative_vectors(vectors, name, error):
    s, c = next((s, c) for s, c in _cases(vectors, "negative") if c["name"] == name)
    with pytest.raises(error) as e:
        _crypto(s, c).verify_url(c["msg_signature"], c["timestamp"], c["nonce"], c["echostr"])
    assert e.value.check == c["expect_error"] and e.value.wx_code == c["expect_code"]


def test_padding_edge_cases_are_the_documented_ones(vectors):
    pads = {c["name"]: c["pad_byte"] for s, c in _cases(vectors, "decrypt_post")}
    assert pads["A-POST"] == 30 and pads["C-POST"] == 1 and pads["V3"] == 32


# -- each check names itself ------------------------------------------------------------------
KEY = "AvluMXaJSmrivhqi8EPrQGiww9Wp/2BN50/kzaCNN/Q"
CORP = "ww1a2b3c4d5e6f7a8b"
C = WeComCrypto("T0kenForDocTests", KEY, CORP)


def _raw_encrypt(data: bytes) -> str:
    from Crypto.Cipher import AES

    key = decode_aes_key(KEY)
    return base64.b64encode(AES.new(key, AES.MODE_CBC, key[:16]).encrypt(data)).decode()


def test_signature_from_another_token_is_refused():
    enc = C.encrypt("<xml/>")
    sig = signature("OtherToken", "1", "2", enc)
    with pytest.raises(InvalidSignature):
        C.decrypt_message(sig, "1", "2", enc)


def test_not_base64():
    with pytest.raises(InvalidBase64):
        C.decrypt("not base64 !!")


def test_truncated_ciphertext():
    enc = base64.b64decode(C.encrypt("<xml>hello</xml>"))
    with pytest.raises(InvalidLength):
        C.decrypt(base64.b64encode(enc[:-5]).decode())


def test_wrong_padding():
    with pytest.raises(InvalidPadding):
        C.decrypt(_raw_encrypt(b"\x00" * 31 + b"\x00"))  # pad byte 0
    with pytest.raises(InvalidPadding):
        C.decrypt(_raw_encrypt(b"\x00" * 28 + b"\x01\x02\x03\x04"))  # 4 claimed, bytes differ


def test_length_field_larger_than_data():
    body = b"R" * 16 + (1000).to_bytes(4, "big") + b"<xml/>" + CORP.encode()
    pad = 32 - len(body) % 32
    with pytest.raises(InvalidLength):
        C.decrypt(_raw_encrypt(body + bytes([pad]) * pad))


def test_foreign_corp_id():
    other = WeComCrypto("T0kenForDocTests", KEY, "wwFOREIGN0000000")
    with pytest.raises(InvalidReceiveId):
        C.decrypt(other.encrypt("<xml/>"))


def test_errors_share_one_base_and_repr_hides_secrets():
    for cls in (InvalidSignature, InvalidBase64, InvalidLength, InvalidPadding, InvalidReceiveId):
        assert issubclass(cls, CryptoError)
    assert "T0ken" not in repr(C) and KEY not in repr(C)


@pytest.mark.parametrize("bad", ["", "short", "A" * 42 + "!", "A" * 44])
def test_malformed_aes_key(bad):
    with pytest.raises(ValueError):
        decode_aes_key(bad)


# -- interoperability with wechatpy, both directions ---------------------------------------------
def _wechatpy():
    from wechatpy.enterprise.crypto import WeChatCrypto

    return WeChatCrypto("T0kenForDocTests", KEY, CORP)


texts = st.one_of(
    st.just(""),
    st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200),
    st.text(alphabet="张三李四王五赵六企业微信签署审批同意拒绝，。！", min_size=1, max_size=400),
    st.integers(min_value=0, max_value=64 * 1024).map(lambda n: ("微签a" * (n // 4 + 1))[: n // 3]),
)


@hsettings(max_examples=150, deadline=None)
@given(content=texts, nonce=st.text("0123456789abcdef", min_size=1, max_size=16))
def test_wechatpy_decrypts_what_we_encrypt(content, nonce):
    xml = f"<xml><Content><![CDATA[{content}]]></Content></xml>"
    body = C.encrypt_reply(xml, "1700000000", nonce)
    from bot.callback.xml import parse

    env = parse(body)
    got = _wechatpy().decrypt_message(
        f"<xml><ToUserName><![CDATA[{CORP}]]></ToUserName><Encrypt><![CDATA[{env['Encrypt']}]]></Encrypt></xml>",
        env["MsgSignature"],
        env["TimeStamp"],
        env["Nonce"],
    )
    assert (got.decode() if isinstance(got, bytes) else got) == xml


@hsettings(max_examples=150, deadline=None)
@given(content=texts, nonce=st.text("0123456789", min_size=1, max_size=10))
def test_we_decrypt_what_wechatpy_encrypts(content, nonce):
    xml = f"<xml><Content><![CDATA[{content}]]></Content></xml>"
    out = _wechatpy().encrypt_message(xml, nonce, "1700000000")
    from bot.callback.xml import parse

    env = parse(out)
    assert C.decrypt_message(env["MsgSignature"], env["TimeStamp"], env["Nonce"], env["Encrypt"]) == xml


def test_a_64k_message_round_trips_with_wechatpy():
    xml = "<xml><Content><![CDATA[" + "签" * (64 * 1024 // 3) + "]]></Content></xml>"
    env = __import__("bot.callback.xml", fromlist=["parse"]).parse(_wechatpy().encrypt_message(xml, "42", "1700000000"))
    assert C.decrypt_message(env["MsgSignature"], env["TimeStamp"], env["Nonce"], env["Encrypt"]) == xml
