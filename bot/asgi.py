"""Import target for uvicorn (`bot.asgi:app`): the app built from the process's settings."""

from bot.app import create_app

app = create_app()
