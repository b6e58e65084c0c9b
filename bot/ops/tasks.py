"""Everything operations registers with the queue: trace/failure hooks and the console's jobs.
Imported by every process that loads tasks (bot.tasks.load_task_modules) and by the web app."""

from bot.ops import jobs, tracing  # noqa: F401
