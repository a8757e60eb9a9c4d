"""Who is calling: a LibreChat service key plus the user it names, or a per-user API key.

The key comes as `Authorization: Bearer <key>` or, as Anthropic's clients send it, `x-api-key`.
With the service key, the user is named by headers LibreChat fills in from `librechat.yaml`
(`X-LibreChat-User-Id: "{{LIBRECHAT_USER_ID}}"`), falling back to where the body names its user
(`user`, which LibreChat sets to the same id; `metadata.user_id` on /v1/messages). LibreChat sends values beyond Latin-1 as `b64:<base64 of UTF-8>`;
an unresolved placeholder arrives empty and is refused rather than billed to nobody. Every value
is checked once, here, by `identity_values` (readable text, NFC, bounded), before any lookup.

The user's e-mail follows the e-mail header: this process remembers the address it last knew
stored for each user and writes only when the header brings another, so a user created before
their first chat (e.g. by `solaris credits grant`) gets alert e-mails from their next request,
without a database write per request.

A key bound to an account of its own (`SOLARIS_SERVICE_ACCOUNTS`, e.g. `platform:sk-rag-…`) is
billed to that account, whatever the request says: it is for what LibreChat sends with no user
at all (the RAG API's embeddings, speech, image tools, moderation). The account is created on
its first request, like a LibreChat user, and has a plan, a balance and limits like one. The
LibreChat key without a user is refused with a message that names this setting.

A user an admin blocked gets 403 `user_blocked`. The block rides on the per-user lookup the
request path makes anyway (plan and block in one query, cached `PLAN_CACHE_TTL_S`), so it
reaches every gateway process within that long, and at once in the process that blocked.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from solaris.config import Settings
from solaris.errors import MissingUser, Unauthorized, UserBlocked
from solaris.gateway.identity_values import clean_text, email_address, header_text
from solaris.ledger.plans import Plan, Subscription
from solaris.ledger.users import Standing, Users, hash_key
from solaris.store.cache import IdentityCache
from solaris.texts.chat import user_blocked

__all__ = ["Caller", "Identity"]

EXTERNAL_ID_LENGTH_MAX = 255  # users.external_id
EMAIL_LENGTH_MAX = 320  # users.email
CONVERSATION_ID_LENGTH_MAX = 128  # usage.conversation_id
PLAN_CACHE_TTL_S = 5.0  # a plan change reaches every gateway process within this
PLAN_CACHE_ENTRIES_MAX = 100_000
README_SERVICE_ACCOUNTS_SECTION = "Features LibreChat calls without a user"


@dataclass(frozen=True, slots=True)
class Caller:
    user_id: int
    external_id: str
    via_librechat: bool  # service key: blocked streams get an in-chat reply instead of a 402
    conversation_id: str | None
    subscription: Subscription

    @property
    def plan(self) -> Plan:
        return self.subscription.plan


class Identity:
    def __init__(self, settings: Settings, users: Users, cache: IdentityCache) -> None:
        self.users = users
        self.cache = cache
        self._service_key_digests = [
            _digest(key.get_secret_value()) for key in settings.librechat_keys
        ]
        self._bound_keys = [
            (_digest(binding.key.get_secret_value()), binding.account)
            for binding in settings.service_accounts
        ]
        self._user_header = settings.user_id_header.lower().encode("latin-1")
        self._email_header = settings.user_email_header.lower().encode("latin-1")
        self._conversation_header = settings.conversation_id_header.lower().encode("latin-1")
        self._user_header_name = settings.user_id_header
        self._email_header_name = settings.user_email_header
        self._conversation_header_name = settings.conversation_id_header
        self._blocked_text = user_blocked(settings.language)
        self._standings: OrderedDict[int, tuple[float, Standing]] = OrderedDict()
        # The e-mail this process last knew stored per user: a header that brings the same one
        # costs nothing. Unknown (evicted, or seen first by another process) means one write.
        # Every miss of the id cache re-reads the user and so refreshes this: what another
        # process stored since is seen within the id cache's TTL, at no extra query.
        self._emails: OrderedDict[int, str | None] = OrderedDict()

    async def resolve(self, headers: Mapping[bytes, bytes], body_user: object = None) -> Caller:
        """The caller; `body_user` is where the body names its user (`user`,
        `metadata.user_id`), the fallback for a service key without the user header."""
        key = _bearer(headers)
        if self._is_service_key(key):
            return await self._librechat_user(headers, body_user)
        if (account := self._bound_account(key)) is not None:
            return await self._service_account(account)
        user_id = await self.cache.get("key:" + hash_key(key))
        if user_id is None:
            user = await self.users.user_for_key(key)
            if user is None:
                raise Unauthorized("Incorrect API key provided.")
            user_id = user.id
            await self.cache.set("key:" + hash_key(key), user_id)
        return Caller(user_id, "", False, None, await self.subscription_of(user_id))

    async def authenticate(self, headers: Mapping[bytes, bytes]) -> None:
        """Any valid key (for routes that are not billed, such as the model list)."""
        key = _bearer(headers)
        if self._is_service_key(key) or self._bound_account(key) is not None:
            return
        if await self.cache.get("key:" + hash_key(key)) is None:
            user = await self.users.user_for_key(key)
            if user is None:
                raise Unauthorized("Incorrect API key provided.")
            await self.cache.set("key:" + hash_key(key), user.id)

    def _is_service_key(self, key: str) -> bool:
        digest = _digest(key)
        # Compare against every key so timing does not reveal which one nearly matched.
        matches = [hmac.compare_digest(digest, known) for known in self._service_key_digests]
        return any(matches)

    def _bound_account(self, key: str) -> str | None:
        """The account a service-account key is bound to (compared as `_is_service_key` does)."""
        digest = _digest(key)
        matches = [
            account for known, account in self._bound_keys if hmac.compare_digest(digest, known)
        ]
        return matches[0] if matches else None

    async def _service_account(self, account: str) -> Caller:
        user_id = await self.cache.get("ext:" + account)
        if user_id is None:
            user_id = (await self.users.ensure(account)).id
            await self.cache.set("ext:" + account, user_id)
        return Caller(user_id, account, False, None, await self.subscription_of(user_id))

    async def _librechat_user(self, headers: Mapping[bytes, bytes], body_user: object) -> Caller:
        external_id = self._external_id(headers, body_user)
        conversation_id = self._header(
            headers, self._conversation_header, self._conversation_header_name,
            CONVERSATION_ID_LENGTH_MAX,
        )  # fmt: skip
        email = email_address(
            self._header(headers, self._email_header, self._email_header_name, EMAIL_LENGTH_MAX)
        )
        user_id = await self.cache.get("ext:" + external_id)
        if user_id is None:
            user = await self.users.ensure(external_id, email)
            user_id = user.id
            self._remember_email(user_id, user.email)
            await self.cache.set("ext:" + external_id, user_id)
        if email is not None and self._emails.get(user_id) != email:
            await self.users.set_email(user_id, email)
            self._remember_email(user_id, email)
        subscription = await self.subscription_of(user_id)
        return Caller(user_id, external_id, True, conversation_id or None, subscription)

    def _external_id(self, headers: Mapping[bytes, bytes], body_user: object) -> str:
        """The user id header, else the body's `user`; refused when absent or unreadable."""
        name = self._user_header_name
        external_id = self._header(headers, self._user_header, name, EXTERNAL_ID_LENGTH_MAX)
        if not external_id and isinstance(body_user, str):
            external_id = clean_text(
                body_user.strip(" "), "`user` field", "user", EXTERNAL_ID_LENGTH_MAX
            )
        if not external_id:
            raise MissingUser(
                f"No user id: the LibreChat service key needs a {name} header "
                '("{{LIBRECHAT_USER_ID}}" in librechat.yaml) or a `user` field in the body. '
                "A feature LibreChat calls without any user (RAG API embeddings, speech, image "
                "tools, moderation) needs a key of its own, bound to an account with "
                "SOLARIS_SERVICE_ACCOUNTS (e.g. platform:sk-…); see README.md, section "
                f'"{README_SERVICE_ACCOUNTS_SECTION}".',
                param="user",
            )
        return external_id

    @staticmethod
    def _header(headers: Mapping[bytes, bytes], key: bytes, name: str, length_max: int) -> str:
        raw = headers.get(key)
        return header_text(raw, name, length_max) if raw else ""

    def _remember_email(self, user_id: int, email: str | None) -> None:
        self._emails[user_id] = email
        self._emails.move_to_end(user_id)
        if len(self._emails) > PLAN_CACHE_ENTRIES_MAX:
            self._emails.popitem(last=False)

    async def subscription_of(self, user_id: int) -> Subscription:
        """The user's plan; raises `UserBlocked` for a blocked user."""
        now = time.monotonic()
        cached = self._standings.get(user_id)
        if cached is not None and cached[0] > now:
            standing = cached[1]
        else:
            standing = await self.users.standing(user_id)
            self._standings[user_id] = (now + PLAN_CACHE_TTL_S, standing)
            self._standings.move_to_end(user_id)
            if len(self._standings) > PLAN_CACHE_ENTRIES_MAX:
                self._standings.popitem(last=False)
        if standing.blocked:
            raise UserBlocked(self._blocked_text)
        return standing.subscription

    def forget(self, user_id: int) -> None:
        """Drop this process's cached standing of a user (after a block, unblock, plan change)."""
        self._standings.pop(user_id, None)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def _bearer(headers: Mapping[bytes, bytes]) -> str:
    """The client's key: `Authorization: Bearer <key>`, or Anthropic's `x-api-key: <key>`."""
    value = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, key = value.partition(" ")
    if scheme.lower() == "bearer" and key.strip():
        return key.strip()
    api_key = headers.get(b"x-api-key", b"").decode("latin-1").strip()
    if api_key:
        return api_key
    raise Unauthorized("Missing API key: send `Authorization: Bearer <key>` (or `x-api-key`).")
