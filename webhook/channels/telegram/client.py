"""Telegram confirmations from the send worker's event loop, through aiogram's Bot API client.

aiogram's Bot lives on the loop it first sends from (its aiohttp session is made there); close()
it from another thread. Each failure is classified the way the outbox needs it.
"""

from __future__ import annotations

import asyncio

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    AiogramError,
    TelegramAPIError,
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramNetworkError,
    TelegramRetryAfter,
    TelegramServerError,
)

from webhook.channels.telegram import render
from webhook.channels.telegram.send_limits import SendLimiter
from webhook.config import TelegramSettings
from webhook.core.outbox import SendResult, SendStatus
from webhook.core.texts import ReplyContent

READ_TIMEOUT_S = 10
CLOSE_TIMEOUT_S = 5.0


class TelegramSender:
    """Sends replies to Telegram chats within the shared send limits."""

    def __init__(self, settings: TelegramSettings, limiter: SendLimiter, *, concurrency: int) -> None:
        """Remember where and how to send; nothing is opened until the first send."""
        self.settings, self.limiter, self.concurrency = settings, limiter, concurrency
        self._bot: Bot | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def admit(self, receiver: str) -> float:
        """0.0 if a message to this chat may go now, else seconds to wait (Telegram's limits)."""
        return self.limiter.wait_s(receiver)

    async def send(self, content: ReplyContent, receiver: str) -> SendResult:
        """Send one reply and classify the outcome."""
        try:
            await self._bot_in_this_loop().send_message(
                chat_id=int(receiver),
                text=content.text,
                reply_markup=render.markup(content),
                request_timeout=READ_TIMEOUT_S,
            )
        except TelegramRetryAfter as exc:  # 429: slow down, the reply is not at fault
            return SendResult(SendStatus.DEFERRED, "telegram 429", retry_after_s=float(exc.retry_after))
        except TelegramForbiddenError:  # the voter blocked the bot: sending again cannot help
            return SendResult(SendStatus.DROPPED, "telegram 403")
        except TelegramBadRequest:
            return SendResult(SendStatus.DEAD, "telegram 400")
        except (TelegramServerError, TelegramNetworkError, TimeoutError) as exc:
            return SendResult(SendStatus.RETRY, f"telegram {type(exc).__name__}")
        except TelegramAPIError as exc:
            return SendResult(SendStatus.DEAD, f"telegram {type(exc).__name__}")
        except AiogramError as exc:  # e.g. ClientDecodeError: an HTML 502 from Telegram's front
            return SendResult(SendStatus.RETRY, f"telegram {type(exc).__name__}")
        except ValueError:
            return SendResult(SendStatus.DEAD, "not a Telegram chat id")
        return SendResult(SendStatus.SENT, "ok")

    def close(self) -> None:
        """Close the Bot's session from a thread other than its loop's; nothing to do if it never sent."""
        loop, bot = self._loop, self._bot
        if bot is not None and loop is not None and loop.is_running():
            asyncio.run_coroutine_threadsafe(bot.session.close(), loop).result(CLOSE_TIMEOUT_S)

    def _bot_in_this_loop(self) -> Bot:
        """The Bot, made on first use in the running loop; refuses any other loop."""
        loop = asyncio.get_running_loop()
        if self._bot is None:
            session = AiohttpSession(
                api=TelegramAPIServer.from_base(self.settings.api_url), limit=self.concurrency
            )
            self._bot, self._loop = Bot(self.settings.bot_token, session=session), loop
        elif loop is not self._loop:
            raise RuntimeError("a TelegramSender serves only the event loop it first sent from")
        return self._bot
