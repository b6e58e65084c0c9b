"""A request asking to switch protocols (`Upgrade: h2c`, as curl --http2 sends over plain HTTP)
is served as HTTP/1.1 with its body, as a server that does not switch may do. httptools stops
reading such a request at the end of its headers, and uvicorn served it without its body: a
callback's envelope was lost and the callback refused. Tested at a real `wqbot serve`."""

from __future__ import annotations

import socket
from urllib.parse import urlencode

import pytest

from tests.reliability.hostile import wqbot_serve
from tests.support import CallbackClient, app_crypto, click, signed


@pytest.fixture
def server(tmp_path, store):
    with wqbot_serve(tmp_path) as running:
        yield running


def _post(params: dict, body: bytes, headers: bytes, chunked: bool = False) -> bytes:
    head = b"POST /wecom/callback?" + urlencode(params).encode() + b" HTTP/1.1\r\nhost: wqbot\r\n" + headers
    if chunked:
        half = len(body) // 2
        return (
            head
            + b"transfer-encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:half], body[half:]))
            + b"0\r\n\r\n"
        )
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


def _answers(sock: socket.socket, n: int) -> list[tuple[bytes, str]]:
    """The status line and body of the next `n` responses (each has a content-length)."""
    data, out = b"", []
    while len(out) < n:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed after {out}"
            data += chunk
        head, _, data = data.partition(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
        )
        while len(data) < length:
            data += sock.recv(65536)
        out.append((head.split(b"\r\n")[0], data[:length].decode()))
        data = data[length:]
    return out


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_an_h2c_upgrade_is_served_as_http11_with_its_body(server, settings, chunked):
    port, _ = server
    crypto = app_crypto(settings)
    plains = [click("help", user=f"h2c{i}") for i in range(3)]
    upgrade = b"connection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n"
    requests = []
    for i, plain in enumerate(plains):
        params, body = signed(crypto, plain)
        # the first asks to upgrade; the rest follow on the same connection, sent at once
        requests.append(_post(params, body.encode(), upgrade if i == 0 else b"", chunked=chunked))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        answers = _answers(sock, 3)
        # and the connection is still HTTP/1.1, open for the next request
        params, body = signed(crypto, click("help", user="after"))
        sock.sendall(_post(params, body.encode(), b""))
        answers += _answers(sock, 1)
    assert [status for status, _ in answers] == [b"HTTP/1.1 200 OK"] * 4
    # each was decrypted and answered: the help reply, to the member who clicked
    wx = CallbackClient(settings, None)
    assert [wx.reply_of(body)["ToUserName"] for _, body in answers] == ["h2c0", "h2c1", "h2c2", "after"]
