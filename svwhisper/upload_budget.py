"""The page's upload budget: an ASGI middleware that bounds what clients can make the server store.

Every POST body is counted as it arrives, not as its headers say: a body longer than its
Content-Length is cut off (413), and a Transfer-Encoding (chunked) body, whose length cannot be
known before it is stored, is refused before it is read (411). Bodies add up to at most
`limit_bytes` within any `window_s` (Gradio's cache window: what it stores it deletes after that);
past it a POST gets 429 "try again". A multipart body may hold one file, and each costs at least
MIN_FILE_BYTES, so that the budget also bounds how many files (and inodes) clients can make.
"""

import collections
import re
import threading
import time
from typing import NamedTuple

# What one stored file costs at least (its inode, its dir, a block): a 0.1 s microphone chunk (48 kHz 16-bit WAV,
# 9.6 kB) costs its size, a thousand empty files 8 MB
MIN_FILE_BYTES = 8 * 1024
FILES_PER_REQUEST = 1  # the page's components upload one file a request
BUSY = "the server holds as many uploads as it can for now: try again in a few minutes"


class Refused(NamedTuple):
    """Why a body was refused while it arrived: the status and the line the client gets."""

    status: int
    text: str


class BodyBudget:
    """ASGI middleware over `app`: see the module's docstring. Safe with requests running at once."""

    def __init__(self, app, limit_bytes: int, window_s: float, clock=time.monotonic):
        self.app, self.limit, self.window_s, self.clock = app, limit_bytes, window_s, clock
        self.sent: collections.deque[tuple[float, int]] = collections.deque()  # (time, bytes), oldest first
        self.used = 0
        self.lock = threading.Lock()

    def admit(self, length: int) -> bool:
        """Whether `length` more bytes fit the budget now (they are counted when they do)."""
        with self.lock:
            now = self.clock()
            while self.sent and self.sent[0][0] < now - self.window_s:
                self.used -= self.sent.popleft()[1]
            if self.used + length > self.limit:
                return False
            self.sent.append((now, length))
            self.used += length
            return True

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"")
        if b"transfer-encoding" in headers or not length.isdigit():
            return await plain(send, 411, "a request body needs a Content-Length (and no Transfer-Encoding)")
        body = CountedBody(receive, int(length), boundary_of(headers.get(b"content-type", b"")))
        if not self.admit(max(int(length), MIN_FILE_BYTES if body.boundary else 0)):
            return await plain(send, 429, BUSY, [(b"retry-after", b"600")])
        answered = []

        async def guarded_send(message):  # once the body is refused, the app's own answer is not sent
            if body.refused is None:
                answered.append(message)
                await send(message)

        try:
            await self.app(scope, body.receive, guarded_send)
        except Exception:
            if body.refused is None:
                raise
        if body.refused is not None and not answered:
            await plain(send, body.refused.status, body.refused.text)


class CountedBody:
    """`receive` of one request, counting its body: Refused past `declared` bytes or past FILES_PER_REQUEST
    multipart parts. The error is raised as Gradio's MultiPartException, so that Gradio's upload parser removes
    the files it has started (it removes them on no other error) and stops reading."""

    def __init__(self, receive, declared: int, boundary: bytes | None):
        self._receive, self.declared, self.boundary = receive, declared, boundary
        self.received, self.delimiters, self.tail = 0, 0, b""
        self.refused: Refused | None = None

    async def receive(self):
        message = await self._receive()
        if message["type"] == "http.request" and self.refused is None:
            chunk = message.get("body", b"")
            self.received += len(chunk)
            if self.received > self.declared:
                self.refuse(413, f"the body is longer than its Content-Length of {self.declared} bytes")
            if self.boundary:
                self.count_parts(chunk)
        return message

    def count_parts(self, chunk: bytes) -> None:
        delimiter = b"--" + self.boundary
        seen = self.tail + chunk  # the tail is too short to hold a whole delimiter: none is counted twice
        self.delimiters += seen.count(delimiter)
        self.tail = seen[-(len(delimiter) - 1) :]  # so that one split across two chunks is counted
        if self.delimiters > FILES_PER_REQUEST + 1:  # each part opens with one; the body ends with one more
            self.refuse(413, f"a request may upload {FILES_PER_REQUEST} file")

    def refuse(self, status: int, text: str) -> None:
        from gradio.route_utils import MultiPartException

        self.refused = Refused(status, text)
        raise MultiPartException(text)


def boundary_of(content_type: bytes) -> bytes | None:
    """The multipart boundary a Content-Type names, or None for a body that is not multipart."""
    if not content_type.lower().startswith(b"multipart/"):
        return None
    found = re.search(rb'boundary="?([^";]{1,200})"?', content_type)
    return found.group(1) if found else None


async def plain(send, status: int, text: str, headers: list | None = None) -> None:
    """A whole text/plain response."""
    body = text.encode()
    head = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": head + (headers or [])})
    await send({"type": "http.response.body", "body": body})
