"""The app menu (docs/api.md, "Menu and chat"): declared in menu.toml, checked against WeCom's rules, pushed with
`wqbot menu push`. The clicks it sends are answered in bot/handlers/chat.py."""

from .definition import MENU_FILE, MenuError, build, load, render, validate

__all__ = ["MENU_FILE", "MenuError", "build", "load", "render", "validate"]
