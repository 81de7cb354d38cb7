"""The Telegram Bot API's wire format for the fake: decoding a call's parameters, errors, checks.

What aiogram 3.31 really sends (aiogram/client/session/aiohttp.py, build_form_data): every call
is a POST of aiohttp FormData, i.e. application/x-www-form-urlencoded (multipart/form-data only
when a file is attached), never JSON. Each value that is not a string is JSON-encoded first, so
chat_id arrives as "123", booleans as "true", reply_markup and allowed_updates as JSON text;
empty values are left out. Telegram (and so decode_params) also takes JSON bodies and queries.
"""

from __future__ import annotations

import email
import email.policy
import itertools
import json
import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from aiohttp import hdrs, web

MAX_TEXT_CHARS = 4096
MAX_CALLBACK_DATA_BYTES = 64
MAX_WEBHOOK_CONNECTIONS = 100
DEFAULT_WEBHOOK_CONNECTIONS = 40
BOT_USERNAME = "viber_vote_test_bot"
BOT_FIRST_NAME = "viber-vote test"
DEFAULT_BOT_ID = 1_000_000_001  # when the token does not start with a numeric bot id
NOT_MODIFIED = (
    "message is not modified: specified new message content and reply markup are exactly "
    "the same as a current content and reply markup of the message"
)
# Parameters whose value is a JSON object or array; form bodies carry them as JSON text.
_JSON_PARAMS = ("reply_markup", "allowed_updates", "entities", "link_preview_options", "reply_parameters")
_MARKUP_KINDS = {"inline_keyboard", "keyboard", "remove_keyboard", "force_reply"}
_CHAT_ID_RE = re.compile(r"-?\d+")
_SECRET_TOKEN_RE = re.compile(r"[A-Za-z0-9_-]{1,256}")


class ApiError(Exception):
    """A Bot API error answer: the HTTP status is the error_code."""

    def __init__(self, code: int, description: str, retry_after: int | None = None) -> None:
        """Keep the fields of the answer."""
        super().__init__(description)
        self.code, self.description, self.retry_after = code, description, retry_after

    def payload(self) -> dict[str, Any]:
        """The JSON body, with parameters.retry_after when set."""
        body: dict[str, Any] = {"ok": False, "error_code": self.code, "description": self.description}
        if self.retry_after is not None:
            body["parameters"] = {"retry_after": self.retry_after}
        return body


def bad_request(what: str) -> ApiError:
    """A 400 answer with Telegram's "Bad Request: " prefix."""
    return ApiError(400, f"Bad Request: {what}")


def too_many_requests(retry_after_s: int) -> ApiError:
    """A 429 answer asking to wait retry_after_s seconds."""
    return ApiError(429, f"Too Many Requests: retry after {retry_after_s}", retry_after_s)


def ok(result: Any, description: str | None = None) -> dict[str, Any]:
    """A successful answer."""
    return {"ok": True, "result": result} | ({"description": description} if description else {})


def decode_params(request: web.BaseRequest, raw: bytes) -> dict[str, Any]:
    """The call's parameters from the query string and a JSON, urlencoded or multipart body.

    Raises ApiError for a body Telegram would refuse, ValueError for bad JSON or non-UTF-8 text.
    """
    params: dict[str, Any] = dict(request.query)
    if raw.strip():
        kind = request.content_type
        if kind == "application/json":
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise bad_request("request body must be a JSON object")
        elif kind == "application/x-www-form-urlencoded":
            body = dict(parse_qsl(raw.decode(), keep_blank_values=True))
        elif kind == "multipart/form-data":
            body = _multipart_fields(request.headers[hdrs.CONTENT_TYPE], raw)
        else:
            raise bad_request(f"unsupported Content-Type {kind!r}")
        params.update(body)
    for key in _JSON_PARAMS:
        if isinstance(params.get(key), str):
            try:
                params[key] = json.loads(params[key])
            except ValueError:
                raise bad_request(f"can't parse {key} JSON object") from None
    return params


def _multipart_fields(content_type: str, raw: bytes) -> dict[str, Any]:
    """Fields of a multipart/form-data body: text as str, files as bytes."""
    head = f"Content-Type: {content_type}\r\n\r\n".encode()
    message = email.message_from_bytes(head + raw, policy=email.policy.HTTP)
    fields: dict[str, Any] = {}
    for part in message.iter_parts():  # type: ignore[attr-defined]
        payload = part.get_payload(decode=True) or b""
        is_file = part.get_filename() is not None
        charset = part.get_content_charset() or "utf-8"
        name = str(part.get_param("name", header="content-disposition"))
        fields[name] = payload if is_file else payload.decode(charset)
    return fields


def chat_id_param(params: dict[str, Any]) -> int:
    """The numeric chat_id of a call (int or numeric string), else Telegram's 400."""
    value = params.get("chat_id")
    if value is None or value == "":
        raise bad_request("chat_id is empty")
    if isinstance(value, bool) or not _CHAT_ID_RE.fullmatch(str(value)):
        raise bad_request("chat not found")
    return int(value)


def int_param(params: dict[str, Any], name: str, default: int | None) -> int | None:
    """An integer parameter (form bodies send numbers as text)."""
    value = params.get(name)
    if value is None or value == "":
        return default
    try:
        return int(str(value))
    except ValueError:
        raise bad_request(f"invalid {name}") from None


def message_text(params: dict[str, Any]) -> str:
    """The text of a sendMessage call: 1-4096 characters."""
    text = params.get("text")
    if not isinstance(text, str) or not text.strip():
        raise bad_request("message text is empty")
    if len(text) > MAX_TEXT_CHARS:
        raise bad_request("message is too long")
    return text


def check_markup(markup: Any, *, inline_only: bool = False) -> None:
    """Reject a reply_markup Telegram could not parse, or callback_data outside 1-64 bytes."""
    if markup is None:
        return
    if not isinstance(markup, dict) or not markup.keys() & _MARKUP_KINDS:
        raise bad_request("can't parse reply keyboard markup JSON object")
    if inline_only and "inline_keyboard" not in markup:
        raise bad_request("inline keyboard expected")
    for key in ("inline_keyboard", "keyboard"):
        rows = markup.get(key, [])
        if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
            raise bad_request("can't parse reply keyboard markup JSON object")
    for button in itertools.chain.from_iterable(markup.get("inline_keyboard", [])):
        data = button.get("callback_data") if isinstance(button, dict) else None
        if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise bad_request("BUTTON_DATA_INVALID")


def webhook_settings(params: dict[str, Any]) -> dict[str, Any]:
    """The settings of a setWebhook call ({} when url is empty, which deletes the webhook).

    Unlike Telegram, http:// and any port are accepted, so the local demo can use its own webhook.
    """
    url = str(params.get("url") or "")
    secret = params.get("secret_token") or None
    if secret is not None and not _SECRET_TOKEN_RE.fullmatch(str(secret)):
        raise bad_request("secret token contains unallowed characters")
    parts = urlsplit(url)
    if url and (parts.scheme not in ("http", "https") or not parts.hostname):
        raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    max_connections = int_param(params, "max_connections", DEFAULT_WEBHOOK_CONNECTIONS)
    if max_connections is None or not 1 <= max_connections <= MAX_WEBHOOK_CONNECTIONS:
        raise bad_request("invalid max_connections")
    allowed = params.get("allowed_updates")
    if allowed is not None and not (isinstance(allowed, list) and all(isinstance(a, str) for a in allowed)):
        raise bad_request("can't parse allowed_updates JSON object")
    if not url:
        return {}
    return {
        "url": url,
        "secret_token": secret,
        "max_connections": max_connections,
        "allowed_updates": allowed,
    }


def bot_user(token: str) -> dict[str, Any]:
    """The bot as a User; its id is the token's numeric prefix, as on Telegram."""
    prefix = token.partition(":")[0]
    bot_id = int(prefix) if prefix.isdigit() else DEFAULT_BOT_ID
    return {"id": bot_id, "is_bot": True, "first_name": BOT_FIRST_NAME, "username": BOT_USERNAME}
