import base64
import binascii
import hashlib
import hmac
import os
import struct
import threading
import time

from Crypto.Cipher import AES

_BLOCK = 32  # WeCom pads to 32 bytes, not AES's 16: the official vectors carry pad bytes up to 32.
_LEN = struct.Struct(">I")


class CryptoError(ValueError):
    """A callback failed a crypto check. `check` names which one."""

    check = "crypto"
    wx_code = -40000

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


class InvalidSignature(CryptoError):
    check, wx_code = "signature", -40001


class InvalidBase64(CryptoError):
    check, wx_code = "base64", -40010


class InvalidLength(CryptoError):
    check, wx_code = "length", -40008


class InvalidPadding(CryptoError):
    check, wx_code = "padding", -40008


class InvalidReceiveId(CryptoError):
    check, wx_code = "receive_id", -40005


def decode_aes_key(encoding_aes_key: str) -> bytes:
    """EncodingAESKey (43 chars) -> the 32-byte AES key. Raises ValueError if malformed."""
    if not isinstance(encoding_aes_key, str) or len(encoding_aes_key) != 43:
        raise ValueError("must be exactly 43 characters")
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("is not base64") from None
    if len(key) != 32:
        raise ValueError("does not decode to a 32-byte key")
    return key


def signature(token: str, timestamp: str, nonce: str, data: str) -> str:
    """msg_signature: sha1 over the four strings sorted, concatenated."""
    return hashlib.sha1("".join(sorted((token, timestamp, nonce, data))).encode()).hexdigest()


class WeComCrypto:
    __slots__ = ("_token", "_key", "_iv", "_iv_int", "_ecb", "_cbc", "_receive_id", "_rid_bytes")

    def __init__(self, token: str, encoding_aes_key: str, receive_id: str):
        self._token = token
        self._key = decode_aes_key(encoding_aes_key)
        self._iv = self._key[:16]
        # CBC decryption is ECB decryption XOR the previous ciphertext block (the IV for the
        # first), so one ECB object, its key schedule built once, serves every message. ECB
        # keeps no state between calls, so threads may share it. (Encryption chains through
        # its own output and needs a CBC object per message.)
        self._ecb = AES.new(self._key, AES.MODE_ECB)
        self._iv_int = int.from_bytes(self._iv, "big")
        self._cbc = threading.local()  # per thread: (a CBC object, its last ciphertext block)
        self._receive_id = receive_id
        self._rid_bytes = receive_id.encode()

    def __repr__(self) -> str:  # never show the token or key
        return f"WeComCrypto(receive_id={self._receive_id!r})"

    # -- checks -----------------------------------------------------------------------------
    def check_signature(self, msg_signature: str, timestamp: str, nonce: str, data: str) -> None:
        expected = signature(self._token, timestamp, nonce, data)
        if not hmac.compare_digest(expected.encode(), (msg_signature or "").encode()):
            raise InvalidSignature(
                "msg_signature does not match: check WECOM_TOKEN (or WECOM_CONTACTS_TOKEN) "
                "against the Token in the WeCom console"
            )

    def decrypt(self, encrypted: str) -> str:
        try:
            ct = base64.b64decode(encrypted, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidBase64("Encrypt is not valid base64 (was '+' turned into a space?)") from None
        if not ct or len(ct) % 16:
            raise InvalidLength(f"ciphertext length {len(ct)} is not a positive multiple of 16")
        n = len(ct)
        pt = (int.from_bytes(self._ecb.decrypt(ct), "little") ^ int.from_bytes(self._iv + ct[:-16], "little")).to_bytes(
            n, "little"
        )
        pad = pt[-1]
        if not 1 <= pad <= _BLOCK or pad > len(pt) or pt[-pad:] != bytes((pad,)) * pad:
            raise InvalidPadding("PKCS#7 padding is invalid: is WECOM_AES_KEY the console's EncodingAESKey?")
        body = pt[16:-pad]
        if len(body) < 4:
            raise InvalidLength("decrypted data is too short to hold a length field")
        (n,) = _LEN.unpack_from(body)
        if n > len(body) - 4:
            raise InvalidLength(f"msg_len {n} is larger than the {len(body) - 4} bytes present")
        rid = body[4 + n :]
        if not hmac.compare_digest(rid, self._rid_bytes):
            raise InvalidReceiveId("message was encrypted for another corp id: check WECOM_CORP_ID")
        try:
            return body[4 : 4 + n].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidLength("message is not valid UTF-8") from None

    def encrypt(self, msg: str, random_prefix: bytes | None = None) -> str:
        raw = msg.encode("utf-8")
        prefix = random_prefix if random_prefix is not None else os.urandom(16)
        data = prefix + _LEN.pack(len(raw)) + raw + self._rid_bytes
        pad = _BLOCK - len(data) % _BLOCK
        data += bytes((pad,)) * pad
        return base64.b64encode(self._cbc_encrypt(data)).decode()

    def _cbc_encrypt(self, data: bytes) -> bytes:
        """AES-CBC from WeCom's IV (the key's first 16 bytes), on a CBC object kept per thread:
        building one costs more than encrypting a reply with it (bench/README.md).

        A CBC object chains on from the last block it produced, `last`. Its next output block is
        E(P1 ^ last); XOR-ing P1 with (last ^ IV) beforehand makes that E(P1 ^ IV), exactly what
        a fresh object would produce, and the rest of the chain follows from there."""
        state = self._cbc
        cbc = getattr(state, "cbc", None)
        if cbc is None:
            cbc, last = AES.new(self._key, AES.MODE_CBC, self._iv), self._iv_int
        else:
            state.cbc = None  # held by this call; should it fail, the next one starts afresh
            last = state.last
        first = int.from_bytes(data[:16], "big") ^ last ^ self._iv_int
        out = cbc.encrypt(first.to_bytes(16, "big") + data[16:])
        state.cbc, state.last = cbc, int.from_bytes(out[-16:], "big")
        return out

    # -- the three operations a callback endpoint needs -------------------------------------
    def verify_url(self, msg_signature: str, timestamp: str, nonce: str, echostr: str) -> str:
        self.check_signature(msg_signature, timestamp, nonce, echostr)
        return self.decrypt(echostr)

    def decrypt_message(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> str:
        self.check_signature(msg_signature, timestamp, nonce, encrypt)
        return self.decrypt(encrypt)

    def sign(self, timestamp: str, nonce: str, encrypt: str) -> str:
        return signature(self._token, timestamp, nonce, encrypt)

    def encrypt_reply(
        self,
        xml: str,
        timestamp: str | None = None,
        nonce: str | None = None,
        random_prefix: bytes | None = None,
    ) -> str:
        timestamp = timestamp or str(int(time.time()))
        nonce = nonce or os.urandom(8).hex()
        enc = self.encrypt(xml, random_prefix)
        sig = signature(self._token, timestamp, nonce, enc)
        return (
            f"<xml>\n<Encrypt><![CDATA[{enc}]]></Encrypt>\n"
            f"<MsgSignature><![CDATA[{sig}]]></MsgSignature>\n"
            f"<TimeStamp>{timestamp}</TimeStamp>\n<Nonce><![CDATA[{nonce}]]></Nonce>\n</xml>"
        )

    def encrypt_message(self, xml: str, timestamp: str, nonce: str) -> tuple[str, str]:
        """(Encrypt, msg_signature) for a message sent *to* a callback URL (the emulator's side)."""
        enc = self.encrypt(xml)
        return enc, signature(self._token, timestamp, nonce, enc)
