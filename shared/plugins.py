"""Plugins: providers added at runtime, by URL (HTTP plugins) or by installed packages.

- **HTTP plugin**: any OpenAI-compatible server, added by name — `add_http_plugin("mybox",
  "http://10.0.0.5:8000/v1")`, or `[[plugins.http]] name = "mybox", url = "..."` in `sluice.toml`.
  It becomes a registry row like the built-in ones.
- **Python plugin**: an entry point in the `sluice.providers` group. Its object is a
  `ProviderSpec`, a `Plugin` (rows plus adapter factories, registered with
  `shared.adapters.register_adapter`), an iterable of those, or a callable returning any of them.
  A plugin that fails to load is skipped with a `plugin_load_failed` warning; a row that is broken
  (bad id, URL or adapter, or a name already taken) with `provider_config_skipped`.

How `chat_path` combines with the URL: the chat URL is `url.rstrip("/") + "/" +
chat_path.lstrip("/")`. Without a `chat_path` it is `/v1/chat/completions` when the URL has no path
(`http://host:8000`) and `/chat/completions` when it has one (`http://host:8000/v1`).
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import structlog

from shared.adapters import Adapter, get_adapter, register_adapter
from shared.errors import ConfigError
from shared.registry import KNOWN_ADAPTERS, ProviderSpec, env_stem, register

GROUP: Final = "sluice.providers"
ID_PATTERN: Final = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
CHAT_SUFFIX: Final = "/chat/completions"
LOOPBACK_HOSTS: Final = frozenset({"localhost", "::1", "0.0.0.0"})



def _log() -> Any:
    """A fresh logger per event, so `structlog.testing.capture_logs` always sees it."""
    return structlog.get_logger("sluice.plugins")


@dataclass(frozen=True)
class Plugin:
    """What a Python plugin offers: provider rows and adapter factories by adapter name."""

    providers: tuple[ProviderSpec, ...] = ()
    adapters: Mapping[str, Callable[[], Adapter]] = field(default_factory=dict)


# -- URLs ---------------------------------------------------------------------------------------
def check_url(url: str) -> str:
    """`url` without a trailing slash; `ConfigError` unless it is http(s)://host[:port][/path].

    The message never repeats the URL (it could hold credentials).
    """
    url = url.strip().rstrip("/")
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or " " in url:
        raise ConfigError("bad URL: expected http(s)://host[:port][/path]")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError("bad URL: a base URL takes no credentials, query or fragment")
    return url


def is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host in LOOPBACK_HOSTS or host.startswith("127.")


def default_chat_path(base_url: str) -> str:
    """`/v1/chat/completions` for a bare host, `/chat/completions` when the URL has a path."""
    return CHAT_SUFFIX if urlsplit(base_url).path.strip("/") else "/v1" + CHAT_SUFFIX


# -- rows ---------------------------------------------------------------------------------------
def adapter_available(name: str) -> bool:
    """True when `shared.adapters` can build an adapter of this name."""
    try:
        get_adapter(name)
    except KeyError:
        return False
    return True


def check_adapter(name: str) -> None:
    if name not in KNOWN_ADAPTERS and not adapter_available(name):
        raise ConfigError(f"unknown adapter {name!r}; known: {', '.join(sorted(KNOWN_ADAPTERS))}")


def check_id(provider_id: str) -> None:
    if not ID_PATTERN.match(provider_id):
        raise ConfigError(f"bad provider id {provider_id!r}: use lowercase letters, digits, _ . -")


def openai_compatible_spec(
    name: str, url: str, *, chat_path: str | None = None, api_key_env: str | None = None,
    model: str | None = None, display_name: str | None = None, adapter: str = "openai-compatible",
    key_required: bool | None = None,
) -> ProviderSpec:
    """A registry row for an OpenAI-compatible server at `url` (see the module docstring)."""
    check_id(name)
    check_adapter(adapter)
    base = check_url(url)
    path = "/" + chat_path.lstrip("/") if chat_path else default_chat_path(base)
    prefix = path[: -len(CHAT_SUFFIX)] if path.endswith(CHAT_SUFFIX) else None
    stem = env_stem(name)
    local = is_loopback(base)
    return ProviderSpec(
        id=name, display_name=display_name or name, adapter=adapter, default_base_url=base,
        key_env=(*((api_key_env,) if api_key_env else ()), f"SLUICE_{stem}_API_KEY"),
        base_url_env=(f"SLUICE_{stem}_BASE_URL",), model_env=(f"SLUICE_{stem}_MODEL",),
        default_model=model, local=local, category="Local" if local else "",
        key_required=bool(api_key_env) if key_required is None else key_required,
        chat_path=path, upstream_prefixed=True, embeddings=prefix is not None,
        embeddings_path=None if prefix is None else prefix + "/embeddings",
        discovery_path=None if prefix is None else prefix + "/models",
    )


def add_http_plugin(
    name: str, url: str, *, chat_path: str | None = None, api_key_env: str | None = None,
    model: str | None = None, replace: bool = False,
) -> ProviderSpec:
    """Register any OpenAI-compatible server under `name` (`ConfigError` if the name is taken)."""
    spec = openai_compatible_spec(
        name, url, chat_path=chat_path, api_key_env=api_key_env, model=model
    )
    return register(spec, replace=replace)


def validate_spec(spec: ProviderSpec) -> None:
    """`ConfigError` for a row sluice could not use: bad id, unknown adapter, bad base URL."""
    check_id(spec.id)
    check_adapter(spec.adapter)
    check_url(spec.default_base_url)


# -- entry points -------------------------------------------------------------------------------
def as_plugin(obj: object) -> Plugin:
    """Normalise what an entry point gives: a row, a `Plugin`, an iterable, or a callable."""
    if callable(obj) and not isinstance(obj, type):
        obj = obj()
    if isinstance(obj, Plugin):
        return obj
    if isinstance(obj, ProviderSpec):
        return Plugin((obj,))
    if isinstance(obj, Iterable) and not isinstance(obj, str | bytes | Mapping):
        return _merge([as_plugin(item) for item in obj])
    raise TypeError(f"expected ProviderSpec, Plugin or a list of them, got {type(obj).__name__}")


def _merge(parts: list[Plugin]) -> Plugin:
    adapters: dict[str, Callable[[], Adapter]] = {}
    for part in parts:
        adapters.update(part.adapters)
    return Plugin(tuple(spec for part in parts for spec in part.providers), adapters)


def install_plugin(plugin: Plugin, *, source: str = "plugin") -> list[ProviderSpec]:
    """Register a plugin's adapters, then its valid rows; returns the rows registered."""
    for name, factory in plugin.adapters.items():
        register_adapter(name, factory)
    return [spec for spec in plugin.providers if _register(spec, source)]


def _register(spec: ProviderSpec, source: str) -> bool:
    try:
        validate_spec(spec)
        register(spec)
    except ConfigError as exc:
        _log().warning("provider_config_skipped", provider=spec.id, reason=str(exc), source=source)
        return False
    return True


def load_entry_points(group: str = GROUP) -> list[ProviderSpec]:
    """Load every `sluice.providers` entry point now; returns the rows registered."""
    added: list[ProviderSpec] = []
    for entry in importlib.metadata.entry_points(group=group):
        added.extend(_load_entry_point(entry))
    return added


def _load_entry_point(entry: importlib.metadata.EntryPoint) -> list[ProviderSpec]:
    try:
        plugin = as_plugin(entry.load())
    except Exception as exc:  # a broken plugin must not stop the others or the process
        _log().warning("plugin_load_failed", plugin=entry.name, target=entry.value,
                    error=f"{type(exc).__name__}: {exc}")
        return []
    return install_plugin(plugin, source=f"entry point {entry.name!r}")


@dataclass
class _Loaded:
    done: bool = False


_LOADED: Final = _Loaded()


def ensure_entry_points_loaded() -> None:
    """`load_entry_points()` once per process (called when the config is installed)."""
    if not _LOADED.done:
        _LOADED.done = True
        load_entry_points()
