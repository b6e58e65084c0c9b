"""The 工作台 tile: each member's 待审批 N / 待签署 M on the app's workbench tile
(docs/notifications.md, "Follow-up"; the WeCom APIs: docs/wecom.md, "The 工作台 tile").

Modules: tile (the JSON, the counts), refresh (the every-minute job, the coalesced and paced
set_workbench_data calls), cli (`wqbot workbench push | fill | show`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import refresh

if TYPE_CHECKING:
    from bot.registry import Registry

__all__ = ["contribute"]


def contribute(app: Registry) -> None:
    app.periodic(refresh.refresh_job)
