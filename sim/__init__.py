"""A local WeCom (企业微信) emulator: server API, callbacks, OAuth/QR-login pages and a control API.

    from sim import SimConfig, create_app
    app = create_app(SimConfig(users=50, departments=8, callback_url="http://127.0.0.1:8000/wecom/callback"))

`wqbot sim` serves it under uvicorn; `wqbot demo` tours wqbot against it. The facts it plays
(paths, JSON fields, errcodes, quotas) are the ones docs/wecom.md states; where the two
disagree, docs/wecom.md wins and the emulator is the bug.
"""

from .config import SimConfig

__all__ = ["SimConfig", "create_app"]


def __getattr__(name):
    # the web app is imported on first use, so the directory generator stays light for benchmarks
    if name == "create_app":
        from .app import create_app

        return create_app
    raise AttributeError(name)
