"""A tiny JSON-over-HTTP client for the examples (standard library only)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request

DEFAULT_URL = os.environ.get("LOGSTORE_URL", "http://127.0.0.1:8080")


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: str | None = None):
        self.url = url.rstrip("/")
        self.token = token or os.environ.get("LOGSTORE_TOKEN")

    def call(self, method: str, path: str, body: object = None, **query) -> dict | None:
        """Send a request; the JSON answer (None for 204). Raises on an error status."""
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        timeout = float(query.get("wait", 0)) + 30
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raise RuntimeError(f"{method} {path}: {exc.code} {exc.read().decode()}") from None
        return json.loads(raw) if raw else None

    def ensure_topic(self, topic: str) -> dict:
        return self.call("PUT", f"/topics/{topic}")

    def publish(self, topic: str, messages: list[dict]) -> dict:
        return self.call("POST", f"/topics/{topic}/messages", {"messages": messages})
