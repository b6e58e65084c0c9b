"""The wechatpy reference server, Flask edition (gunicorn, sync workers): the same work as
bench/ref_starlette.py. No dedupe, no store. Run it the way the benchmark does::

    WECOM_TOKEN=… WECOM_AES_KEY=… WECOM_CORP_ID=… gunicorn -w 2 bench.ref_flask:app
"""

import os

import xmltodict
from flask import Flask, Response, request
from wechatpy.enterprise.crypto import WeChatCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply

from bot.texts import HELP  # the same text as ours, so both encrypt replies of one size

crypto = WeChatCrypto(os.environ["WECOM_TOKEN"], os.environ["WECOM_AES_KEY"], os.environ["WECOM_CORP_ID"])
app = Flask(__name__)


@app.post("/wecom/callback")
def callback():
    q = request.args
    try:
        sig, ts, nonce = q["msg_signature"], q["timestamp"], q["nonce"]
    except KeyError:
        return Response("missing query parameter", status=400)
    try:
        plain = crypto.decrypt_message(request.get_data(), sig, ts, nonce)
    except (InvalidSignatureException, InvalidCorpIdException):
        return Response("forbidden", status=403)
    msg = xmltodict.parse(plain)["xml"]
    if msg.get("MsgType") == "event" and msg.get("Event") == "click":
        reply = TextReply(source=msg["ToUserName"], target=msg["FromUserName"], content=HELP).render()
        return Response(crypto.encrypt_message(reply, nonce, ts), mimetype="application/xml")
    return Response("")
