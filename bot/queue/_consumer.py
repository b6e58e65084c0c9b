"""One consumer per embedded queue.

Several processes may share one SQLite queue file (`wqbot serve --workers N` on SQLite: N web
processes enqueue into it), but only one may consume it: each consumer's scheduler would start
the periodic jobs again, and huey's SQLite storage is built for one reader. The consumer holds an
exclusive lock on a file beside the queue for as long as it lives; the kernel releases it when the
process ends, however it ends (a SIGKILL included), so a restarted process can take it over."""

from __future__ import annotations

import fcntl
import os

_held: dict[str, int] = {}  # lock path -> the open file holding its lock, for the process's lifetime


def embedded_queue_path(queue_url: str) -> str | None:
    """The SQLite file of an embedded queue; None for Redis and memory queues."""
    if not queue_url.startswith("sqlite:///"):
        return None
    return os.path.abspath(queue_url[len("sqlite:///") :])


def claim_consumer(queue_url: str) -> str | None:
    """Make this process the embedded queue's one consumer: None once it is (or when the queue is
    not a shared file: Redis takes any number of workers), else what holds it, to tell the operator."""
    path = embedded_queue_path(queue_url)
    if path is None:
        return None
    lock_path = path + ".consumer"
    if lock_path in _held:
        return None
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        return f"process {holder} already consumes the queue {path} (lock {lock_path})"
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _held[lock_path] = fd
    return None


def consumer_pid(queue_url: str) -> int | None:
    """The pid of the process consuming this embedded queue, if one does (for checks and tests)."""
    path = embedded_queue_path(queue_url)
    if path is None or not os.path.exists(path + ".consumer"):
        return None
    fd = os.open(path + ".consumer", os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:  # held: its pid is in the file
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
