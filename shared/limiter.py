"""The distributed rate limiter: requests/min, tokens/min and in-flight requests per scope.

A scope is one provider x key x model (`limit_scope`). `RedisLimiter` runs one atomic Lua call
(`lua/limiter.lua`) per operation on Redis's own clock, so any number of processes on any number
of hosts share one view; `MemoryLimiter` is its in-process twin with the same semantics (one test
body runs against both).

Around one HTTP attempt (every retry is a new attempt: acquire again) the transport does:

    tokens = estimate_tokens(kind, body)
    grant = await wait_for_grant(limiter, scope, limits, tokens, sleep=asyncio.sleep)
    if not grant.ok:   # "too_large": fail it (split/shrink); else the wait > max_wait_s:
        ...            # hand the request back to the queue instead of holding the worker
    used = None
    try:
        status, headers, body = await send(...)
        await limiter.observe(scope, parse_signal(status, headers, body, time.time()), status)
        used = prompt + completion tokens of a parsed 2xx (None if the provider reported none)
    finally:
        await limiter.release(scope, grant.lease_id, used_tokens=used, reserved_tokens=tokens)

`used_tokens` replaces the reservation in the tokens/min account (a refund or a charge); pass
None to keep the estimate (no usage reported, a failed attempt, or a provider that counts the
requested `max_tokens` against its limit rather than the tokens produced).

Rates are GCRA (a theoretical arrival time per dimension): requests are spread evenly at the
configured rate, with `burst_s` seconds of tolerance, so a fleet sustains the limit without
bunching. `acquire(..., max_wait_s=w)` *reserves* the next slot when it is at most `w` away
(`ok=True, wait_s>0`: sleep, then send) so waiters do not poll in a herd; cooldowns and a full
in-flight set are never reserved (`ok=False`, come back after `wait_s`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import random
import re
import secrets
import tempfile
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Final, Literal, NamedTuple, Protocol

import msgspec
import redis
import redis.asyncio as aredis

from shared import keys
from shared.cooldown import Lesson, learn
from shared.ratelimit import RateSignal

Reason = Literal["", "rpm", "tpm", "in_flight", "cooldown", "too_large"]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]

WINDOW: Final = 60.0
KEY_PREFIX: Final = f"{keys.PREFIX}:limit:"
CHARS_PER_TOKEN: Final = 4
MESSAGE_OVERHEAD_TOKENS: Final = 4
NON_TEXT_PART_TOKENS: Final = 1000
"""An image/audio/file part: a flat guess (its base64 length says nothing about its tokens)."""
DEFAULT_COMPLETION_TOKENS: Final = 512
"""Reserved for the answer when the request sets no `max_tokens`/`max_completion_tokens`."""
WAIT_JITTER_MAX: Final = 0.05
EPSILON: Final = 1e-6
"""Times are stored to the microsecond in Redis: a slot closer than this to now is now."""
_FINGERPRINT: Final = re.compile(r"^fp-[0-9a-f]{12}$")
_UNSAFE_SCOPE_CHARS: Final = re.compile(r"[{}\s]")


class Limits(msgspec.Struct, frozen=True):
    """Configured limits for one scope; None = not configured (learned from the provider, if it
    says). Values must be positive."""

    rpm: int | None = None
    tpm: int | None = None
    max_in_flight: int | None = None

    def __post_init__(self) -> None:
        for name in ("rpm", "tpm", "max_in_flight"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"limit {name} must be positive or None, got {value}")


class Grant(msgspec.Struct, frozen=True):
    """An acquire's answer.

    ok=True, wait_s=0: send now. ok=True, wait_s>0: a slot is reserved; sleep `wait_s`, then send
    (`reason` names the binding rate). ok=False: nothing taken; `reason` says why and `wait_s`
    when to ask again ("too_large" never fits the tokens-per-minute budget: do not ask again).
    Release every ok grant's `lease_id`.
    """

    ok: bool
    wait_s: float
    lease_id: str = ""
    reason: Reason = ""


class LimiterConfig(msgspec.Struct, frozen=True):
    """Knobs shared by both implementations (defaults documented here, where they are defined).

    burst_s: seconds of rate a scope may run ahead (rpm 600: 11 requests at once after idle).
    lease_ttl_s: an in-flight slot not released within this is freed (a crashed worker);
      keep it above the request timeout.
    in_flight_poll_s: how soon to ask again when every in-flight slot is taken.
    header_margin: fraction of a provider-announced limit we use when none is configured.
    aimd_step: rpm added per successful response once a rate is learned from bare 429s (about
      +20% a minute at full use); aimd_decrease: on a bare 429, the learned rate becomes this
      factor times the 2xx rate measured since the last decrease (the rate the provider still
      accepted while refusing the rest); aimd_starved: the factor instead when it accepted nothing
      over the span; aimd_min_rpm: floor; aimd_holdoff_s: the shortest span a
      decrease measures (429s of one burst arrive together; the first bare 429 only opens a span).
    state_ttl_s: an idle scope's state (learned limits) is dropped after this.
    """

    burst_s: float = 1.0
    lease_ttl_s: float = 300.0
    in_flight_poll_s: float = 0.1
    header_margin: float = 0.95
    aimd_step: float = 0.2
    aimd_decrease: float = 0.9
    aimd_starved: float = 0.5
    aimd_min_rpm: float = 1.0
    aimd_holdoff_s: float = 5.0
    state_ttl_s: int = 86400


class Limiter(Protocol):
    """The seam the transport uses; `RedisLimiter` and `MemoryLimiter` implement it."""

    async def acquire(
        self, scope: str, limits: Limits, tokens: int, *, max_wait_s: float = 0.0
    ) -> Grant:
        """Take one request of `tokens` estimated tokens, or say how long to wait. Checks, in
        order: too_large, cooldown, in-flight, then rpm/tpm (the longer wait names the reason).
        With `max_wait_s > 0` an rpm/tpm slot up to that far ahead is reserved. Reserving
        callers take slots ahead of try-only (`max_wait_s=0`) callers on the same scope."""
        ...

    async def release(
        self, scope: str, lease_id: str, *, used_tokens: int | None, reserved_tokens: int
    ) -> None:
        """Free the in-flight slot (unknown or expired leases are fine) and, unless
        `used_tokens` is None, move the tokens/min account by `used - reserved`."""
        ...

    async def cooldown(self, scope: str, seconds: float) -> None:
        """No acquire on this scope succeeds for `seconds` (an existing longer one stays)."""
        ...

    async def observe(self, scope: str, signal: RateSignal, status: int) -> None:
        """Learn from one response: cooldown, provider limits, AIMD (`shared.cooldown.learn`)."""
        ...


class LimiterKeys(NamedTuple):
    state: str
    leases: str


def key_fingerprint(secret: str) -> str:
    """A short, stable, one-way name for a key (`fp-` + 12 hex digits of a SHA-256)."""
    digest = hashlib.sha256(b"sluice-limit\0" + secret.encode("utf-8")).hexdigest()
    return f"fp-{digest[:12]}"


def limit_scope(provider: str, key_ref: str | None, model: str) -> str:
    """`provider:key:model`. `key_ref` is a fingerprint (kept), None/"" for keyless providers, or
    anything else (an alias, a raw key by mistake), which is fingerprinted: a raw key never
    reaches Redis. Pass `key_fingerprint(api_key)` so two aliases of one key share a limit."""
    if not key_ref:
        key_part = "-"
    elif _FINGERPRINT.match(key_ref):
        key_part = key_ref
    else:
        key_part = key_fingerprint(key_ref)
    return ":".join(_UNSAFE_SCOPE_CHARS.sub("_", part) for part in (provider, key_part, model))


def limiter_keys(scope: str) -> LimiterKeys:
    """Both keys share a `{scope}` hash tag, so a Redis Cluster keeps them in one slot."""
    base = f"{KEY_PREFIX}{{{scope}}}"
    return LimiterKeys(f"{base}:state", f"{base}:leases")


def new_lease_id() -> str:
    return secrets.token_hex(8)


async def wait_for_grant(
    limiter: Limiter,
    scope: str,
    limits: Limits,
    tokens: int,
    *,
    sleep: Sleep,
    rand: Callable[[], float] = random.random,
    max_wait_s: float = 60.0,
    reserve_s: float = 10.0,
) -> Grant:
    """Acquire, sleeping as told, until granted (returned after its reserved wait has passed).

    Returns an ok=False grant without sleeping when it is "too_large" or the wait exceeds
    `max_wait_s` (hand the request back to the queue). Slots up to `reserve_s` ahead are
    reserved; a later slot is asked for again as soon as it comes within `reserve_s`.
    """
    horizon = min(reserve_s, max_wait_s)
    while True:
        grant = await limiter.acquire(scope, limits, tokens, max_wait_s=horizon)
        if grant.ok and grant.wait_s > 0:
            await sleep(grant.wait_s)
        if grant.ok or grant.reason == "too_large" or grant.wait_s > max_wait_s:
            return grant
        await sleep(_retry_after(grant, horizon, rand))


def _retry_after(refused: Grant, horizon: float, rand: Callable[[], float]) -> float:
    """Come back when a rate slot enters the reservation window, or when the cooldown/in-flight
    wait is over; plus a small jitter so refused callers do not return in lock-step."""
    wait = refused.wait_s
    if refused.reason in ("rpm", "tpm"):
        wait = max(wait - horizon, 0.0)
    return wait + rand() * min(0.1 * refused.wait_s, WAIT_JITTER_MAX)


# --- token estimates -------------------------------------------------------------------------


def estimate_tokens(kind: str, body: Mapping[str, Any]) -> int:
    """Tokens to reserve for one request: prompt estimate plus the answer's budget for chat;
    the input for embeddings. ~4 UTF-8 bytes per token (tiktoken's cl100k_base when it is
    installed and its encoding is already cached: it is never downloaded)."""
    if kind == "embeddings":
        return max(1, _input_tokens(body.get("input")))
    return _prompt_tokens(body) + _completion_budget(body)


def _text_tokens(text: str) -> int:
    encoder = _tiktoken_encoder()
    if encoder is not None:
        return len(encoder.encode(text, disallowed_special=()))
    return math.ceil(len(text.encode("utf-8")) / CHARS_PER_TOKEN)


def _input_tokens(value: Any) -> int:
    if isinstance(value, str):
        return _text_tokens(value)
    if isinstance(value, int):
        return 1
    if isinstance(value, list):
        return sum(_input_tokens(item) for item in value)
    return 0


def _prompt_tokens(body: Mapping[str, Any]) -> int:
    total = sum(_message_tokens(m) for m in body.get("messages") or () if isinstance(m, Mapping))
    for extra in ("tools", "functions", "response_format"):
        if body.get(extra):
            total += _text_tokens(json.dumps(body[extra], separators=(",", ":")))
    return total


def _message_tokens(message: Mapping[str, Any]) -> int:
    total = MESSAGE_OVERHEAD_TOKENS + _content_tokens(message.get("content"))
    if message.get("tool_calls"):
        total += _text_tokens(json.dumps(message["tool_calls"], separators=(",", ":")))
    return total


def _content_tokens(content: Any) -> int:
    if isinstance(content, str):
        return _text_tokens(content)
    if not isinstance(content, list):
        return 0
    return sum(_part_tokens(part) for part in content)


def _part_tokens(part: Any) -> int:
    if isinstance(part, Mapping) and isinstance(part.get("text"), str):
        return _text_tokens(part["text"])
    return NON_TEXT_PART_TOKENS


def _completion_budget(body: Mapping[str, Any]) -> int:
    budget = body.get("max_completion_tokens") or body.get("max_tokens")
    n = body.get("n")
    choices = n if isinstance(n, int) and n > 0 else 1
    per_choice = budget if isinstance(budget, int) and budget > 0 else DEFAULT_COMPLETION_TOKENS
    return per_choice * choices


_CL100K_URL: Final = "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"


@functools.cache
def _tiktoken_encoder() -> Any:
    """cl100k_base when tiktoken is importable and its encoding file is already cached on disk
    (tiktoken would otherwise download it: a worker must not depend on that)."""
    try:
        import tiktoken

        if not os.path.exists(_tiktoken_cache_path(_CL100K_URL)):
            return None
        return tiktoken.get_encoding("cl100k_base")
    except Exception:
        return None


def _tiktoken_cache_path(url: str) -> str:
    base = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR")
    base = base or os.path.join(tempfile.gettempdir(), "data-gym-cache")
    return os.path.join(base, hashlib.sha1(url.encode()).hexdigest())


# --- Redis -----------------------------------------------------------------------------------


def _script_text(name: str) -> str:
    return resources.files("shared").joinpath("lua", name).read_text(encoding="utf-8")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _opt(value: float | None) -> float | str:
    return "" if value is None else value


class RedisLimiter:
    """The limiter shared by every worker: state in Redis, one Lua call per operation.

    `clock` is for tests only: when given, its time replaces Redis `TIME` in the script (one
    process with a fake clock); production leaves it None so every host shares Redis's clock.
    """

    def __init__(
        self,
        client: aredis.Redis,
        config: LimiterConfig | None = None,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.client = client
        self.config = config or LimiterConfig()
        self.clock = clock
        self._script = client.register_script(_script_text("limiter.lua"))

    async def _call(self, op: str, scope: str, *args: Any) -> Any:
        now = "" if self.clock is None else repr(self.clock())
        keys_ = list(limiter_keys(scope))
        return await self._script(keys=keys_, args=[op, now, self.config.state_ttl_s, *args])

    async def acquire(
        self, scope: str, limits: Limits, tokens: int, *, max_wait_s: float = 0.0
    ) -> Grant:
        c = self.config
        sizes = (limits.rpm or 0, limits.tpm or 0, limits.max_in_flight or 0, tokens)
        knobs = (c.burst_s, c.lease_ttl_s, c.in_flight_poll_s, c.header_margin)
        reply = await self._call("acquire", scope, *sizes, new_lease_id(), max_wait_s, *knobs)
        ok, wait, reason, lease_id = reply
        return Grant(bool(ok), float(_text(wait)), _text(lease_id), _reason(_text(reason)))

    async def release(
        self, scope: str, lease_id: str, *, used_tokens: int | None, reserved_tokens: int
    ) -> None:
        delta = "" if used_tokens is None else used_tokens - reserved_tokens
        await self._call("release", scope, lease_id, delta)

    async def cooldown(self, scope: str, seconds: float) -> None:
        await self._call("cooldown", scope, max(0.0, seconds))

    async def observe(self, scope: str, signal: RateSignal, status: int) -> None:
        lesson = learn(signal, status)
        if lesson == Lesson():
            return
        c = self.config
        learned = (_opt(lesson.cooldown_s), _opt(lesson.rpm), _opt(lesson.tpm), lesson.aimd)
        knobs = (c.aimd_step, c.aimd_decrease, c.aimd_starved, c.aimd_min_rpm, c.aimd_holdoff_s)
        await self._call("observe", scope, *learned, *knobs)


def _reason(text: str) -> Reason:
    reasons: tuple[Reason, ...] = ("", "rpm", "tpm", "in_flight", "cooldown", "too_large")
    if text in reasons:
        return text
    raise ValueError(f"limiter script returned an unknown reason {text!r}")


class ScopeView(msgspec.Struct, frozen=True):
    """What the shared limiter holds for one scope (`sluice limits`). Rates are per minute; None:
    nothing learned. Configured limits live in each worker's settings, not here."""

    scope: str
    header_rpm: float | None
    header_tpm: float | None
    aimd_rpm: float | None
    cooldown_s: float
    in_flight: int


def read_scopes(client: redis.Redis) -> list[ScopeView]:
    """Every scope with limiter state in Redis, read with a blocking client."""
    seconds, micros = client.time()
    now = seconds + micros / 1e6
    scopes = set()
    for key in client.scan_iter(match=f"{KEY_PREFIX}{{*}}:*", count=500):
        name = _text(key)
        scopes.add(name[len(KEY_PREFIX) + 1 : name.rindex("}")])
    views = []
    for scope in sorted(scopes):
        state, leases = limiter_keys(scope)
        fields = ("hdr_rpm", "hdr_tpm", "aimd_rpm", "cooldown")
        hdr_rpm, hdr_tpm, aimd_rpm, cooldown = (_float(v) for v in client.hmget(state, fields))
        in_flight = int(client.zcount(leases, now, "+inf"))
        views.append(ScopeView(scope, hdr_rpm, hdr_tpm, aimd_rpm, max(0.0, (cooldown or 0.0) - now),
                               in_flight))
    return views


def _float(value: Any) -> float | None:
    return None if value is None else float(_text(value))


# --- in-process twin -------------------------------------------------------------------------


@dataclass
class _Scope:
    """One scope's state; mirrors the Redis hash and leases set field for field."""

    rpm_tat: float | None = None
    tpm_tat: float | None = None
    tok_iv: float | None = None
    cooldown: float = 0.0
    hdr_rpm: float | None = None
    hdr_tpm: float | None = None
    aimd_rpm: float | None = None
    aimd_at: float | None = None
    ok_n: int = 0
    leases: dict[str, float] = field(default_factory=dict)

    def learned_rpm(self, margin: float) -> float:
        rpm = self.hdr_rpm * margin if self.hdr_rpm else 0.0
        if self.aimd_rpm and (rpm == 0 or self.aimd_rpm < rpm):
            rpm = self.aimd_rpm
        return rpm


class MemoryLimiter:
    """The same limiter for one process (tests, `sluice run` without Redis), on `clock`."""

    def __init__(self, clock: Clock, config: LimiterConfig | None = None) -> None:
        self.clock = clock
        self.config = config or LimiterConfig()
        self._scopes: dict[str, _Scope] = {}

    def _scope(self, scope: str) -> _Scope:
        return self._scopes.setdefault(scope, _Scope())

    async def acquire(
        self, scope: str, limits: Limits, tokens: int, *, max_wait_s: float = 0.0
    ) -> Grant:
        st, now, c = self._scope(scope), self.clock(), self.config
        budget = limits.tpm or st.hdr_tpm
        if budget and tokens > budget:
            return Grant(False, 0.0, "", "too_large")
        if st.cooldown - now > EPSILON:
            return Grant(False, st.cooldown - now, "", "cooldown")
        busy = self._in_flight_wait(st, limits.max_in_flight or 0, now)
        if busy is not None:
            return Grant(False, busy, "", "in_flight")
        rpm = limits.rpm or st.learned_rpm(c.header_margin)
        tpm = limits.tpm or (st.hdr_tpm * c.header_margin if st.hdr_tpm else 0.0)
        start, reason = self._slot(st, rpm, tpm, now)
        if start - now > max_wait_s:
            return Grant(False, start - now, "", reason)
        self._commit(st, rpm, tpm, tokens, start)
        lease = new_lease_id()
        st.leases[lease] = start + c.lease_ttl_s
        return Grant(True, start - now, lease, reason)

    def _in_flight_wait(self, st: _Scope, cap: int, now: float) -> float | None:
        st.leases = {lease: exp for lease, exp in st.leases.items() if exp > now + EPSILON}
        if cap <= 0 or len(st.leases) < cap:
            return None
        return min(self.config.in_flight_poll_s, min(st.leases.values()) - now)

    def _slot(self, st: _Scope, rpm: float, tpm: float, now: float) -> tuple[float, Reason]:
        start, burst = now, self.config.burst_s
        reason: Reason = ""
        if rpm > 0 and st.rpm_tat is not None and st.rpm_tat - burst > start:
            start, reason = st.rpm_tat - burst, "rpm"
        if tpm > 0 and st.tpm_tat is not None and st.tpm_tat - burst > start:
            start, reason = st.tpm_tat - burst, "tpm"
        return (now, "") if start - now <= EPSILON else (start, reason)

    def _commit(self, st: _Scope, rpm: float, tpm: float, tokens: int, start: float) -> None:
        if rpm > 0:
            st.rpm_tat = max(start if st.rpm_tat is None else st.rpm_tat, start) + WINDOW / rpm
        if tpm > 0:
            st.tok_iv = WINDOW / tpm
            tat = start if st.tpm_tat is None else st.tpm_tat
            st.tpm_tat = max(tat, start) + tokens * st.tok_iv

    async def release(
        self, scope: str, lease_id: str, *, used_tokens: int | None, reserved_tokens: int
    ) -> None:
        st, now = self._scope(scope), self.clock()
        st.leases.pop(lease_id, None)
        if used_tokens is None or st.tpm_tat is None or st.tok_iv is None:
            return
        delta = used_tokens - reserved_tokens
        st.tpm_tat = max(max(st.tpm_tat, now) + delta * st.tok_iv, now)

    async def cooldown(self, scope: str, seconds: float) -> None:
        st = self._scope(scope)
        st.cooldown = max(st.cooldown, self.clock() + max(0.0, seconds))

    async def observe(self, scope: str, signal: RateSignal, status: int) -> None:
        lesson = learn(signal, status)
        st, now = self._scope(scope), self.clock()
        if lesson.cooldown_s is not None:
            st.cooldown = max(st.cooldown, now + lesson.cooldown_s)
        st.hdr_rpm = lesson.rpm if lesson.rpm is not None else st.hdr_rpm
        st.hdr_tpm = lesson.tpm if lesson.tpm is not None else st.hdr_tpm
        if lesson.aimd == "up":
            self._aimd_up(st)
        elif lesson.aimd == "down":
            self._aimd_down(st, now)

    def _aimd_up(self, st: _Scope) -> None:
        if st.aimd_at is not None:
            st.ok_n += 1
        if st.aimd_rpm is not None:
            st.aimd_rpm += self.config.aimd_step

    def _aimd_down(self, st: _Scope, now: float) -> None:
        c = self.config
        if st.aimd_at is None:
            st.aimd_at, st.ok_n = now, 0  # the first bare 429 opens a span: only the cooldown
            return
        elapsed = now - st.aimd_at
        if elapsed < c.aimd_holdoff_s:
            return
        base, factor = st.aimd_rpm, c.aimd_starved
        if st.ok_n > 0:
            accepted = st.ok_n * WINDOW / elapsed
            base = accepted if base is None else min(base, accepted)
            factor = c.aimd_decrease
        if base is not None:
            st.aimd_rpm = max(c.aimd_min_rpm, base * factor)
        st.aimd_at, st.ok_n = now, 0
