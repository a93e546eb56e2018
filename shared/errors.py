"""One exception tree. Catch `SluiceError` for anything sluice raises; `ProviderError` for the provider.

A `ProviderError` carries `provider`, `status` and `retryable` so the transport can decide what to do
without parsing messages. Messages tell the user what to do next and never hold a secret.
"""

from __future__ import annotations

from typing import Final


class SluiceError(Exception):
    """Root of every error sluice raises on purpose."""


class ConfigError(SluiceError):
    """Configuration is missing or wrong (bad TOML, unknown setting, no redis-server binary)."""


class InputError(SluiceError):
    """A request the user gave us is malformed. `line` is 1-based when it came from a file."""

    def __init__(self, message: str, *, line: int | None = None, source: str | None = None) -> None:
        self.line = line
        self.source = source
        where = ""
        if line is not None:
            where = f"{source or 'input'}:{line}: "
        super().__init__(f"{where}{message}")


class UnknownProviderError(InputError):
    """A provider name that no registry row or alias matches; names the close matches."""

    def __init__(
        self, name: str, matches: list[str], *, line: int | None = None, source: str | None = None
    ) -> None:
        self.name = name
        self.matches = matches
        hint = f" Did you mean: {', '.join(matches)}?" if matches else ""
        msg = f"unknown provider {name!r}.{hint} Run `sluice providers` for the full list."
        super().__init__(msg, line=line, source=source)


class MissingKeyError(ConfigError):
    """A provider that needs a key has none; names the env vars that would supply one."""

    def __init__(self, provider: str, env_vars: tuple[str, ...] | list[str]) -> None:
        self.provider = provider
        self.env_vars = tuple(env_vars)
        names = " or ".join(self.env_vars) or "its key setting"
        super().__init__(f"no API key for provider {provider!r}: set {names} in the worker's environment")


class ProviderError(SluiceError):
    """The provider answered with an error (or could not be reached)."""

    default_retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status: int = 0,
        code: str | None = None,
        retryable: bool | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status = status
        self.code = code
        self.retryable = self.default_retryable if retryable is None else retryable
        self.retry_after = retry_after


class BadRequestError(ProviderError):
    """400/413/422: the request itself is wrong; retrying will not help."""


class AuthenticationError(ProviderError):
    """401: the key was refused."""


class PermissionDeniedError(ProviderError):
    """403: the key may not use this model or endpoint."""


class NotFoundError(ProviderError):
    """404: unknown model or path."""


class ConflictError(ProviderError):
    default_retryable = True


class RateLimitError(ProviderError):
    """429: slow down; `retry_after` holds the server's hint when it gave one."""

    default_retryable = True


class QuotaExceededError(RateLimitError):
    """429 that cannot succeed soon (billing quota, request larger than the whole TPM budget)."""

    default_retryable = False


class ServerError(ProviderError):
    """5xx (and Anthropic's 529 overloaded)."""

    default_retryable = True


class ProviderTimeoutError(ProviderError):
    """408, or no answer within the request's timeout."""

    default_retryable = True


class ProviderConnectionError(ProviderError):
    """The provider could not be reached (refused, reset, DNS)."""

    default_retryable = True


class ResponseFormatError(ProviderError):
    """A 2xx body we could not parse."""


STATUS_ERRORS: Final[dict[int, type[ProviderError]]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    408: ProviderTimeoutError,
    409: ConflictError,
    413: BadRequestError,
    422: BadRequestError,
    429: RateLimitError,
}


def error_class_for_status(status: int) -> type[ProviderError]:
    """The exception class for an HTTP status: the table, then 5xx → ServerError."""
    if status in STATUS_ERRORS:
        return STATUS_ERRORS[status]
    if status >= 500:
        return ServerError
    return ProviderError
