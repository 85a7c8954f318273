"""HTTP/1.1 without I/O: requests as bytes out, answers parsed from bytes in.

The one implementation of the protocol for both clients: `sync.py` feeds it from a blocking
socket, `aio.py` from an asyncio protocol. It knows what the logstore client needs and no
more: one request at a time per connection (no pipelining), answers framed by
`Content-Length`, `Transfer-Encoding: chunked` or the end of the connection, keep-alive as
HTTP/1.1 defines it. Small on purpose: most of a small request's CPU goes to building and
parsing HTTP, and this does it in a few string operations.
"""

from __future__ import annotations

from dataclasses import dataclass, field

MAX_HEAD_BYTES = 64 * 1024
"""A status line and headers longer than this are refused (a broken or hostile peer)."""


class ProtocolError(Exception):
    """The peer sent bytes that are not an HTTP/1.1 answer; the connection is unusable."""


@dataclass(slots=True)
class Response:
    """A complete answer. `headers` has lower-case names; `keep_alive` says whether the
    connection may carry another request."""

    status: int
    headers: dict[str, str]
    body: bytes
    keep_alive: bool = True


def encode_request(
    method: str, target: str, fixed_headers: str, headers: str, body: bytes = b""
) -> bytes:
    """The bytes of a request. `fixed_headers` (Host, Authorization, ...: the same for every
    request of a client) and `headers` are `Name: value\\r\\n` lines, built once by callers."""
    head = (
        f"{method} {target} HTTP/1.1\r\n{fixed_headers}{headers}Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body if body else head.encode("latin-1")


@dataclass(slots=True)
class ResponseParser:
    """Feed it the bytes a connection receives; `feed` answers the `Response` once complete.

    A parser reads one answer. Bytes after it (which a server must not send unasked) make
    the answer non-keep-alive, so the connection is closed instead of reused."""

    method: str = "GET"
    _buffer: bytearray = field(default_factory=bytearray)
    _status: int = 0
    _headers: dict[str, str] | None = None
    _keep_alive: bool = True
    _length: int | None = None  # body bytes expected; None: chunked or until close
    _chunked: bool = False
    _body_start: int = 0
    _chunks: list[bytes] = field(default_factory=list)

    def feed(self, data: bytes) -> Response | None:
        """Take received bytes; the answer when it is complete, else None."""
        self._buffer += data
        if self._headers is None and not self._parse_head():
            return None
        if self._chunked:
            return self._parse_chunks()
        if self._length is None:
            return None  # until the connection ends: `end` answers
        end = self._body_start + self._length
        if len(self._buffer) < end:
            return None
        if len(self._buffer) > end:
            self._keep_alive = False
        return self._response(bytes(self._buffer[self._body_start : end]))

    def end(self) -> Response:
        """The peer closed the connection: the answer, if closing was how it ends.
        `ProtocolError` if the answer was cut short."""
        if self._headers is not None and self._length is None and not self._chunked:
            self._keep_alive = False
            return self._response(bytes(self._buffer[self._body_start :]))
        raise ProtocolError(
            "the server closed the connection before the answer was complete"
            if self._buffer
            else "the server closed the connection without answering"
        )

    @property
    def started(self) -> bool:
        """Whether any byte of the answer has arrived."""
        return bool(self._buffer) or self._headers is not None

    def _parse_head(self) -> bool:
        buffer = self._buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD_BYTES:
                raise ProtocolError(f"the answer's headers are over {MAX_HEAD_BYTES} bytes")
            return False
        lines = buffer[:end].decode("latin-1").split("\r\n")
        status_line = lines[0].split(" ", 2)
        if len(status_line) < 2 or not status_line[0].startswith("HTTP/1."):
            raise ProtocolError(f"not an HTTP/1.x status line: {lines[0][:100]!r}")
        try:
            self._status = int(status_line[1])
        except ValueError:
            raise ProtocolError(f"bad status code in {lines[0][:100]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise ProtocolError(f"bad header line {line[:100]!r}")
            headers[name.strip().lower()] = value.strip()
        self._headers = headers
        connection = headers.get("connection", "").lower()
        if status_line[0] == "HTTP/1.0":
            self._keep_alive = connection == "keep-alive"
        else:
            self._keep_alive = connection != "close"
        self._body_start = end + 4
        if self.method == "HEAD" or self._status in (204, 304) or self._status < 200:
            self._length = 0
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked = True
        elif "content-length" in headers:
            try:
                self._length = int(headers["content-length"])
            except ValueError:
                raise ProtocolError("bad Content-Length") from None
        else:
            self._keep_alive = False
        return True

    def _parse_chunks(self) -> Response | None:
        """Consume whole chunks from the buffer; the answer after the last (0) chunk."""
        buffer, position = self._buffer, self._body_start
        while True:
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                break
            size_text = bytes(buffer[position:line_end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                trailer_end = buffer.find(b"\r\n\r\n", line_end)
                if trailer_end < 0:
                    break
                if len(buffer) > trailer_end + 4:
                    self._keep_alive = False
                return self._response(b"".join(self._chunks))
            data_end = line_end + 2 + size
            if len(buffer) < data_end + 2:
                break
            self._chunks.append(bytes(buffer[line_end + 2 : data_end]))
            position = data_end + 2
        del buffer[self._body_start : position]
        return None

    def _response(self, body: bytes) -> Response:
        assert self._headers is not None
        return Response(self._status, self._headers, body, self._keep_alive)
