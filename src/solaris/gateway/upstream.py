"""The one HTTP client to the upstream (LiteLLM proxy, OpenAI, …): a shared aiohttp session.

aiohttp rather than httpx on this path: it costs a tenth of the CPU per request (see
PERFORMANCE.md). Connection errors and timeouts become `UpstreamUnreachable` / `UpstreamTimeout`
here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Mapping

import aiohttp
from yarl import URL

from solaris.config import Settings
from solaris.errors import UpstreamTimeout, UpstreamUnreachable

__all__ = ["Upstream"]

CONNECTIONS_MAX = 512
PROBE_TIMEOUT_S = 3.0


class Upstream:
    def __init__(self, settings: Settings) -> None:
        self.base_url = settings.upstream_base_url
        self._timeout = aiohttp.ClientTimeout(
            total=settings.stream_seconds_max,
            connect=settings.upstream_connect_timeout_s,
            sock_read=settings.upstream_read_timeout_s,
        )
        self._headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
        if settings.upstream_api_key is not None:
            self._headers["Authorization"] = (
                f"Bearer {settings.upstream_api_key.get_secret_value()}"
            )
        self._session: aiohttp.ClientSession | None = None
        self._urls: dict[str, URL] = {}  # parsed once per path (our own few constants)

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=CONNECTIONS_MAX, keepalive_timeout=30),
            timeout=self._timeout,
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def probe(self) -> str:
        """ "ok" when the upstream answers HTTP at all (for /readyz), else what is wrong."""
        assert self._session is not None, "Upstream.start() was not awaited"
        try:
            async with self._session.get(
                self.base_url + "/models",
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=PROBE_TIMEOUT_S),
            ) as response:
                if response.status in (401, 403):
                    return f"refuses our key ({response.status}): check SOLARIS_UPSTREAM_API_KEY"
                return "ok" if response.status < 500 else f"answers {response.status}"
        except (TimeoutError, aiohttp.ClientError) as error:
            return f"unreachable: {error or type(error).__name__}"

    async def request(
        self,
        method: str,
        path: str,
        body: bytes | None,
        request_id: str,
        extra_headers: Mapping[str, str] | None = None,
    ) -> aiohttp.ClientResponse:
        """Send a request; the caller reads (or streams) and releases the response.
        `extra_headers` are the client's that the upstream needs too (`anthropic-version`)."""
        assert self._session is not None, "Upstream.start() was not awaited"
        headers = {**self._headers, "X-Request-Id": request_id}
        if extra_headers:
            headers.update(extra_headers)
        try:
            url = self._urls.get(path)
            if url is None:
                url = self._urls[path] = URL(self.base_url + path)
            return await self._session.request(method, url, data=body, headers=headers)
        except TimeoutError:
            raise UpstreamTimeout("The model provider did not answer in time.") from None
        except aiohttp.ClientError as error:
            raise UpstreamUnreachable(f"The model provider could not be reached: {error}") from None
