"""The wechatpy reference server, Starlette edition: how a WeCom callback is usually written.

Decrypts with wechatpy, parses the plaintext with xmltodict, answers a click or a text message
with an encrypted text reply. No dedupe, no store. Run it the way the benchmark does::

    WECOM_TOKEN=… WECOM_AES_KEY=… WECOM_CORP_ID=… \\
    uvicorn bench.ref_starlette:app --workers 2 --http httptools --loop uvloop --no-access-log
"""

import os

import xmltodict
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply

from bot.texts import HELP  # the same text as ours, so both encrypt replies of one size

crypto = WeChatCrypto(os.environ["WECOM_TOKEN"], os.environ["WECOM_AES_KEY"], os.environ["WECOM_CORP_ID"])


async def callback(request: Request) -> Response:
    q = request.query_params
    try:
        sig, ts, nonce = q["msg_signature"], q["timestamp"], q["nonce"]
    except KeyError:
        return PlainTextResponse("missing query parameter", status_code=400)
    body = await request.body()
    try:
        plain = crypto.decrypt_message(body, sig, ts, nonce)
    except (InvalidSignatureException, InvalidCorpIdException):
        return PlainTextResponse("forbidden", status_code=403)
    msg = xmltodict.parse(plain)["xml"]
    # menu clicks and text messages get the help text (as ours answers `help`, unknown keys and chat)
    if (msg.get("MsgType") == "event" and msg.get("Event") == "click") or msg.get("MsgType") == "text":
        reply = TextReply(source=msg["ToUserName"], target=msg["FromUserName"], content=HELP).render()
        return Response(crypto.encrypt_message(reply, nonce, ts), media_type="application/xml")
    return PlainTextResponse("")


app = Starlette(routes=[Route("/wecom/callback", callback, methods=["POST"])])
