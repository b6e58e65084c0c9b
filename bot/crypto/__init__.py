"""WeCom callback message crypto (企业微信 回调加解密), written on pycryptodome.

Public surface::

    crypto = WeComCrypto(token, encoding_aes_key, receive_id)
    crypto.verify_url(msg_signature, timestamp, nonce, echostr) -> str
    crypto.decrypt_message(msg_signature, timestamp, nonce, encrypt) -> str
    crypto.encrypt_reply(xml, timestamp=None, nonce=None) -> str   # full <xml> envelope

Exception tree (every error says which check failed)::

    CryptoError
    ├── InvalidSignature     msg_signature does not match (wrong Token, or altered data)
    ├── InvalidBase64        the Encrypt/echostr value is not base64
    ├── InvalidLength        ciphertext not a multiple of the AES block, or the msg_len
    │                        field points past the end of the data
    ├── InvalidPadding       PKCS#7 (block 32) padding is not valid: wrong EncodingAESKey?
    └── InvalidReceiveId     the message was encrypted for another corp id (WECOM_CORP_ID)
"""

from ._cipher import (
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

__all__ = [
    "CryptoError",
    "InvalidBase64",
    "InvalidLength",
    "InvalidPadding",
    "InvalidReceiveId",
    "InvalidSignature",
    "WeComCrypto",
    "decode_aes_key",
    "signature",
]
