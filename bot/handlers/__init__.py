"""Callback handlers: what wqbot does with each message WeCom delivers, one module per capability.
Each module's `contribute(app)` registers its handlers on the app's routers when it is built.

- chat.py      menu clicks, text messages, opening the app (help, 待我处理, the greeting)
- contacts.py  change_contact events (directory sync)
- cards.py     template_card_event taps (sign notifications)
"""
