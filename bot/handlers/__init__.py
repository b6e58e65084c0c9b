"""Callback handlers, one module per capability, assembled into the routers the endpoints use.

- chat.py      menu clicks and text messages (help, pending, …)
- contacts.py  change_contact events (directory sync)
- cards.py     template_card_event taps (sign notifications)
"""

import importlib

from bot.router import Router

router = Router()  # the app callback (/wecom/callback)
contacts_router = Router()  # the 通讯录同步 callback (/wecom/contacts/callback)

for _name in ("chat", "contacts", "cards"):
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as e:  # a capability not built yet
        if e.name != f"{__name__}.{_name}":
            raise
