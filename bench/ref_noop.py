"""The HTTP floor: uvicorn[standard] (httptools + uvloop) answering every request with an empty
200 after reading its body. What the server side of one callback costs before any WeCom work::

    uvicorn bench.ref_noop:app --http httptools --loop uvloop --no-access-log
"""


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})
