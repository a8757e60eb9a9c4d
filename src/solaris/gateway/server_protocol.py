"""uvicorn's httptools HTTP/1.1 protocol, answering what its parser refuses in OpenAI's shape.

The parser refuses a request before the app sees it (a raw control character such as \\x01, ESC
or DEL in a header value, a malformed request line); uvicorn then answers a plain-text 400 that
the OpenAI SDKs show as an unreadable error. This subclass only changes that answer's body:
`{"error": {"message", "type": "invalid_request_error", "param", "code"}}`, the connection still
closed as uvicorn does (the parser cannot resume after an error).
"""

from __future__ import annotations

import sys

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from solaris.errors import error_body

__all__ = ["GatewayHttpProtocol", "malformed_request_body"]


def malformed_request_body(reason: str | None) -> bytes:
    detail = f" ({reason.rstrip('.')})" if reason else ""
    return error_body(
        f"Invalid HTTP request{detail}: the request line or a header is malformed, for example "
        "a control character in a header value.",
        "invalid_request_error",
        "invalid_http_request",
    )


class GatewayHttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this inside its `except HttpParserError`: the parser's reason (e.g.
        # "Invalid header value char") is the exception being handled.
        error = sys.exception()
        body = malformed_request_body(
            str(error) if isinstance(error, httptools.HttpParserError) else None
        )
        content = [STATUS_LINE[400]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend(
            [
                b"content-type: application/json\r\n",
                b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
                b"connection: close\r\n",
                b"\r\n",
                body,
            ]
        )
        self.transport.write(b"".join(content))
        self.transport.close()
