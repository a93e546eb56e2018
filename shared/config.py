"""Settings and provider endpoints: the only reader of `os.environ` and of `sluice.toml`.

Precedence, for every value: explicit argument > environment > config file > registry default.

The config file is `sluice.toml` in the working directory, or the path in `SLUICE_CONFIG`, or an
explicit path (a path that was asked for must exist). `load_settings()` — called at every process
start — reads it and *installs* it: `[providers.<id>]` values become that registry row (so every
reader of the registry sees them), `[[providers.openai_compat]]` and `[[plugins.http]]` entries
become new rows. A broken provider entry is skipped with one `provider_config_skipped` warning;
the rest still load. A broken `[settings]` table is a `ConfigError`.

Keys: `api_key_env` in a provider section names the env var to read first (the file chooses the
variable, the environment supplies the value), then the row's own env vars; a literal `api_key` in
the file is the last resort and is registered with the scrubber. Keys are resolved here, inside the
worker process; they never go into a job, a log line or a result.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

import msgspec
import structlog

from shared.adapters.base import Endpoint
from shared.errors import ConfigError, MissingKeyError
from shared.limiter import Limits
from shared.plugins import (
    adapter_available,
    check_url,
    ensure_entry_points_loaded,
    openai_compatible_spec,
)
from shared.registry import (
    ProviderSpec,
    all_providers,
    check_key_format,
    close_matches,
    env_stem,
    table,
)
from shared.scrub import default_scrubber

DEFAULT_CHUNK_SIZE: Final = 128
"""Requests per RQ job; one job runs its requests concurrently in one event loop."""
DEFAULT_CONCURRENCY: Final = 256
"""Requests in flight per worker process."""
DEFAULT_SLOTS: Final = 4
"""Chunks one worker process runs at once (each slot is an RQ worker thread on the same loop)."""
DEFAULT_REQUEST_TIMEOUT: Final = 120.0
"""Seconds for one provider call (a total deadline: keep-alive padding resets idle timers)."""
DEFAULT_MAX_ATTEMPTS: Final = 6
DEFAULT_MAX_INLINE_WAIT: Final = 30.0
"""Seconds a worker waits inline for a retry or a rate-limit slot; a longer wait hands the request
back to the queue (or to its fallback route)."""
DEFAULT_RESULT_TTL: Final = 7 * 24 * 3600
"""Seconds batch results are kept in Redis."""
CONFIG_FILE_NAME: Final = "sluice.toml"
OPTION_NAMES: Final = ("region", "profile", "key_file", "project_id", "location", "token_path",
                       "credentials_path")
"""Provider settings that go into `Endpoint.options` (besides `chat_path`, `embeddings_path`)."""
PATH_OPTIONS: Final = frozenset({"key_file", "token_path", "credentials_path"})
CREDENTIAL_OPTIONS: Final = ("key_file", "token_path", "credentials_path", "profile")
ENV_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _log() -> Any:
    """A fresh logger per event, so `structlog.testing.capture_logs` always sees it."""
    return structlog.get_logger("sluice.config")


_T = TypeVar("_T")


class Settings(msgspec.Struct, frozen=True):
    redis_url: str | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE
    concurrency: int = DEFAULT_CONCURRENCY
    slots: int = DEFAULT_SLOTS
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    max_inline_wait: float = DEFAULT_MAX_INLINE_WAIT
    result_ttl: int = DEFAULT_RESULT_TTL
    log_level: str = "INFO"
    log_format: str = "auto"
    config_path: str | None = None
    """The config file these settings were read from (None: no file)."""


SETTING_CASTS: Final[tuple[tuple[str, type], ...]] = (
    ("chunk_size", int), ("concurrency", int), ("slots", int), ("request_timeout", float),
    ("max_attempts", int), ("max_inline_wait", float),
    ("result_ttl", int), ("log_level", str), ("log_format", str),
)


class ProviderSection(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[providers.<id>]`: overrides for one registry row. Never commit a literal `api_key`."""

    api_key_env: str | None = None
    api_key: str | None = None
    base_url: str | None = None
    model: str | None = None
    chat_path: str | None = None
    region: str | None = None
    profile: str | None = None
    key_file: str | None = None
    project_id: str | None = None
    location: str | None = None
    token_path: str | None = None
    credentials_path: str | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_in_flight: int | None = None
    max_embed_inputs: int | None = None


class CustomEndpoint(ProviderSection, frozen=True, kw_only=True):
    """`[[providers.openai_compat]]` (or `[[plugins.http]]`, written `name`/`url`): a new row.

    `chat_path` is appended to `base_url` (`base_url.rstrip("/") + "/" + chat_path.lstrip("/")`);
    it defaults to `/v1/chat/completions` when `base_url` has no path (`https://host`) and to
    `/chat/completions` when it has one (`https://host/api/v1`). Embeddings and the model list
    sit beside it (`.../embeddings`, `.../models`).
    """

    id: str
    base_url: str
    display_name: str | None = None
    adapter: str = "openai-compatible"


@dataclass(frozen=True)
class FileConfig:
    """A parsed config file: settings, row overrides, new rows; literal keys kept out of repr."""

    path: str | None = None
    settings: Mapping[str, Any] = field(default_factory=dict)
    overrides: tuple[ProviderSpec, ...] = ()
    added: tuple[ProviderSpec, ...] = ()
    keys: Mapping[str, str] = field(default_factory=dict, repr=False)
    skipped: tuple[str, ...] = ()


class ResolvedProvider(msgspec.Struct, frozen=True):
    """Everything a worker needs for one provider. `key_source` names where the key came from."""

    endpoint: Endpoint
    model: str | None
    limits: Limits
    key_source: str | None = None


class ProviderStatus(msgspec.Struct, frozen=True):
    """Whether a provider can be used as configured: `state` is one of key, local, credentials,
    keyless, missing, needs-setup, unsupported; `hint` says what to do (never holds a secret)."""

    configured: bool
    state: str
    hint: str = ""


class _Skip(Exception):
    """One provider entry is broken: skip it with one warning."""


# -- settings ----------------------------------------------------------------------------------
def load_settings(
    env: Mapping[str, str] | None = None, *, config: FileConfig | str | Path | None = None,
    **overrides: object,
) -> Settings:
    """Settings: explicit arguments > environment (`SLUICE_*`, `REDIS_URL`) > config file > default.

    Also installs the config file's providers into the registry (see the module docstring).
    """
    env = os.environ if env is None else env
    file = config if isinstance(config, FileConfig) else load_config(config, env)
    install(file)
    values: dict[str, object] = {**file.settings, "config_path": file.path}
    values.update(_settings_from_env(env))
    values.update({k: v for k, v in overrides.items() if v is not None})
    return _convert_settings(values, file.path or "arguments")


def _settings_from_env(env: Mapping[str, str]) -> dict[str, object]:
    values: dict[str, object] = {}
    if url := env.get("SLUICE_REDIS_URL") or env.get("REDIS_URL"):
        values["redis_url"] = url
    for name, cast in SETTING_CASTS:
        if (raw := env.get(f"SLUICE_{name.upper()}")) is not None:
            try:
                values[name] = cast(raw)
            except ValueError:
                raise ConfigError(f"SLUICE_{name.upper()} must be a {cast.__name__}") from None
    return values


def _convert_settings(values: Mapping[str, object], source: str) -> Settings:
    try:
        return msgspec.convert(values, Settings)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"bad setting in {source}: {exc}") from None


# -- the config file ---------------------------------------------------------------------------
def find_config(
    path: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Path | None:
    """The config file to read: explicit path > `SLUICE_CONFIG` > `./sluice.toml` (if present)."""
    env = os.environ if env is None else env
    wanted = path or env.get("SLUICE_CONFIG")
    if wanted:
        found = Path(wanted).expanduser()
        if not found.is_file():
            raise ConfigError(f"config file {str(found)!r} does not exist")
        return found
    default = Path(CONFIG_FILE_NAME)
    return default if default.is_file() else None


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> FileConfig:
    """Read and check the config file (an empty `FileConfig` when there is none)."""
    found = find_config(path, env)
    if found is None:
        return FileConfig()
    try:
        data = tomllib.loads(found.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read config file {str(found)!r}: {exc}") from None
    return parse_config(data, source=str(found))


def parse_config(data: Mapping[str, Any], source: str = "<config>") -> FileConfig:
    """A `FileConfig` from parsed TOML. Broken provider entries are skipped with a warning."""
    unknown = set(data) - {"settings", "providers", "plugins"}
    if unknown:
        raise ConfigError(f"{source}: unknown table(s) {sorted(unknown)}; "
                          "known: settings, providers, plugins")
    settings = _file_settings(data.get("settings", {}), source)
    providers = dict(_table(data, "providers", source))
    customs = _list(providers.pop("openai_compat", []), "providers.openai_compat", source)
    plugins = _list(_table(data, "plugins", source).get("http", []), "plugins.http", source)
    builder = _Builder(source)
    for pid, raw in providers.items():
        builder.section(pid, raw)
    for raw in [*customs, *(_plugin_entry(p) for p in plugins)]:
        builder.custom(raw)
    return builder.result(settings)


def _table(data: Mapping[str, Any], name: str, source: str) -> Mapping[str, Any]:
    value = data.get(name, {})
    if not isinstance(value, Mapping):
        raise ConfigError(f"{source}: `{name}` must be a table")
    return value


def _list(value: Any, name: str, source: str) -> list[Any]:
    if not isinstance(value, list):
        raise ConfigError(f"{source}: `{name}` must be an array of tables ([[{name}]])")
    return value


def _plugin_entry(raw: Any) -> Any:
    """`[[plugins.http]] name=..., url=...` is a custom endpoint under other field names."""
    if not isinstance(raw, Mapping):
        return raw
    renamed = {"name": "id", "url": "base_url"}
    return {renamed.get(k, k): v for k, v in raw.items()}


def _file_settings(raw: Any, source: str) -> dict[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: [settings] must be a table")
    known = set(Settings.__struct_fields__) - {"config_path"}
    if unknown := sorted(set(raw) - known):
        raise ConfigError(f"{source}: unknown setting(s) {unknown} in [settings]; known: "
                          f"{', '.join(sorted(known))}")
    _convert_settings(raw, source)
    return dict(raw)


class _Builder:
    """Turns provider sections into rows, collecting what was skipped and why."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.overrides: dict[str, ProviderSpec] = {}
        self.added: dict[str, ProviderSpec] = {}
        self.keys: dict[str, str] = {}
        self.skipped: list[str] = []

    def section(self, pid: str, raw: Any) -> None:
        with self._skipping(pid):
            spec = _known_provider(pid)
            section = _decode(raw, ProviderSection)
            self.overrides[spec.id] = apply_section(spec, section)
            self._keep_key(spec.id, section)

    def custom(self, raw: Any) -> None:
        pid = str(raw.get("id", "?")) if isinstance(raw, Mapping) else "?"
        with self._skipping(pid):
            entry = _decode(raw, CustomEndpoint)
            if entry.id in self.added:
                raise _Skip(f"id {entry.id!r} is declared twice")
            self.added[entry.id] = custom_spec(entry)
            self._keep_key(entry.id, entry)

    def _keep_key(self, pid: str, section: ProviderSection) -> None:
        if section.api_key:
            self.keys[pid] = section.api_key

    @contextlib.contextmanager
    def _skipping(self, pid: str) -> Iterator[None]:
        try:
            yield
        except (_Skip, ConfigError) as exc:
            self.skipped.append(pid)
            _log().warning("provider_config_skipped", provider=pid, reason=str(exc),
                           source=self.source)

    def result(self, settings: dict[str, Any]) -> FileConfig:
        return FileConfig(self.source, settings, tuple(self.overrides.values()),
                          tuple(self.added.values()), dict(self.keys), tuple(self.skipped))


def _known_provider(pid: str) -> ProviderSpec:
    """The registry row a `[providers.<id>]` section refers to, before any file override."""
    spec = table().lookup(pid)
    if spec is None:
        hint = f" (did you mean {', '.join(close_matches(pid))}?)" if close_matches(pid) else ""
        raise _Skip(f"unknown provider {pid!r}{hint}; "
                    "custom endpoints go in [[providers.openai_compat]]")
    return table().original(spec.id)


def _decode(raw: Any, kind: type[_T]) -> _T:
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        raise _Skip(str(exc)) from None


def apply_section(spec: ProviderSpec, section: ProviderSection) -> ProviderSpec:
    """`spec` with a config section's values as its defaults (checked: `_Skip` when broken)."""
    changes: dict[str, Any] = {}
    if section.base_url:
        changes["default_base_url"] = _checked_url(section.base_url)
    if section.model:
        changes["default_model"] = section.model
    if section.chat_path:
        changes["chat_path"] = "/" + section.chat_path.lstrip("/")
    if section.api_key_env:  # naming the key's variable makes the key required
        changes["key_env"] = (_env_name(section.api_key_env),
                              *(n for n in spec.key_env if n != section.api_key_env))
        changes["key_required"] = True
    changes.update(_positive_ints(section))
    if options := _section_options(section):
        changes["default_options"] = tuple({**dict(spec.default_options), **options}.items())
    return msgspec.structs.replace(spec, **changes)


def _checked_url(url: str) -> str:
    try:
        return check_url(url)
    except ConfigError as exc:
        raise _Skip(str(exc)) from None


def _env_name(name: str) -> str:
    if not ENV_NAME.match(name):
        raise _Skip("api_key_env must name an environment variable, not hold a key")
    return name


def _positive_ints(section: ProviderSection) -> dict[str, int]:
    values: dict[str, int] = {}
    for name in ("rpm", "tpm", "max_in_flight", "max_embed_inputs"):
        value = getattr(section, name)
        if value is not None and value < 1:
            raise _Skip(f"{name} must be at least 1")
        if value is not None:
            values[name] = value
    return values


def _section_options(section: ProviderSection) -> dict[str, str]:
    options = {name: getattr(section, name) for name in OPTION_NAMES if getattr(section, name)}
    for name in PATH_OPTIONS & set(options):
        path = Path(options[name]).expanduser()
        if not path.is_file():
            raise _Skip(f"{name} {str(path)!r} does not exist")
        options[name] = str(path)
    return options


def custom_spec(entry: CustomEndpoint) -> ProviderSpec:
    """The registry row for a `[[providers.openai_compat]]` / `[[plugins.http]]` entry."""
    try:
        spec = openai_compatible_spec(
            entry.id, entry.base_url, chat_path=entry.chat_path, api_key_env=entry.api_key_env,
            model=entry.model, display_name=entry.display_name, adapter=entry.adapter,
            key_required=bool(entry.api_key_env or entry.api_key),
        )
    except ConfigError as exc:
        raise _Skip(str(exc)) from None
    return apply_section(spec, entry)


# -- installing a config into the registry ----------------------------------------------------
@dataclass
class _State:
    config: FileConfig = field(default_factory=FileConfig)


_STATE: Final = _State()


def active_config() -> FileConfig:
    """The config file installed last (an empty one before `load_settings`/`install`)."""
    return _STATE.config


def install(config: FileConfig) -> FileConfig:
    """Make `config` the active one: undo the previous install, override rows, add new rows.

    Also loads entry-point plugins (once per process) and gives literal keys to the scrubber.
    Returns the config as installed (rows that clashed at install time are left out).
    """
    uninstall()
    ensure_entry_points_loaded()
    for spec in config.overrides:
        table().override(spec)
    added = tuple(spec for spec in config.added if _register(spec, config.path))
    default_scrubber().add(config.keys.values())
    _STATE.config = dataclasses.replace(config, added=added)
    return _STATE.config


def _register(spec: ProviderSpec, source: str | None) -> bool:
    try:
        table().register(spec)
    except ConfigError as exc:
        _log().warning("provider_config_skipped", provider=spec.id, reason=str(exc), source=source)
        return False
    return True


def uninstall() -> None:
    """Remove what the active config added and restore the rows it overrode."""
    config = _STATE.config
    for spec in config.added:
        with contextlib.suppress(ConfigError):
            table().unregister(spec.id)
    for spec in config.overrides:
        table().restore(spec.id)
    _STATE.config = FileConfig()


# -- resolving one provider -------------------------------------------------------------------
def first_env(env: Mapping[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if value := env.get(name):
            return value
    return None


def resolve_endpoint(
    spec: ProviderSpec, env: Mapping[str, str] | None = None, **explicit: Any
) -> Endpoint:
    """Base URL, key and options for one provider; `MissingKeyError` names the env vars to set.

    Keyword arguments are those of `resolve_provider` (`api_key`, `base_url`, `options`).
    """
    return resolve_provider(spec, env, **explicit).endpoint


def resolve_provider(
    spec: ProviderSpec, env: Mapping[str, str] | None = None, *, api_key: str | None = None,
    base_url: str | None = None, model: str | None = None, options: Mapping[str, str] | None = None,
) -> ResolvedProvider:
    """Endpoint, default model and limits: explicit argument > environment > file > registry."""
    env = os.environ if env is None else env
    require_supported(spec)
    opts = resolve_options(spec, env, options)
    url = resolve_base_url(spec, env, base_url=base_url, options=opts)
    key, source = find_key(spec, env, api_key)
    if key is None and spec.key_required:
        raise MissingKeyError(spec.id, spec.key_env[:3])
    _warn_key_format(spec, key)
    chosen = model or first_env(env, spec.model_env) or spec.default_model
    endpoint = Endpoint(spec.id, url, key, opts)
    return ResolvedProvider(endpoint, chosen, provider_limits(spec, env), source)


def is_supported(spec: ProviderSpec) -> bool:
    """False for rows listed without an adapter (Copilot, Qwen OAuth) until one is registered."""
    return spec.supported or adapter_available(spec.adapter)


def require_supported(spec: ProviderSpec) -> None:
    if not is_supported(spec):
        raise ConfigError(f"provider {spec.id!r} ({spec.display_name}) is listed but not supported "
                          f"yet: sluice has no {spec.adapter!r} adapter")


def resolve_options(
    spec: ProviderSpec,
    env: Mapping[str, str] | None = None,
    explicit: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """`Endpoint.options`: paths, then file/registry defaults, then env vars, then `explicit`."""
    env = os.environ if env is None else env
    options = {name: path for name, path in (("chat_path", spec.chat_path),
                                             ("embeddings_path", spec.embeddings_path)) if path}
    options.update(spec.default_options)
    for name, names in spec.option_env:
        if value := first_env(env, names):
            options[name] = value
    options.update(explicit or {})
    return {k: str(Path(v).expanduser()) if k in PATH_OPTIONS else v for k, v in options.items()}


def resolve_base_url(
    spec: ProviderSpec, env: Mapping[str, str] | None = None, *, base_url: str | None = None,
    options: Mapping[str, str] | None = None,
) -> str:
    """The base URL: explicit > env (`*_HOST` values may omit the path) > file > default."""
    env = os.environ if env is None else env
    url = base_url or env_base_url(spec, env) or spec.default_base_url
    opts = resolve_options(spec, env) if options is None else options
    return normalise_base_url(fill_placeholders(spec, url, opts))


def env_base_url(spec: ProviderSpec, env: Mapping[str, str]) -> str | None:
    """The first base-URL env var set; a `*_HOST` value without a path gets the default's path."""
    for name in spec.base_url_env:
        if value := env.get(name):
            return _with_default_path(spec, value) if name.endswith("_HOST") else value
    return None


def _with_default_path(spec: ProviderSpec, host: str) -> str:
    url = normalise_base_url(host)
    if urlsplit(url).path.strip("/"):
        return url
    return url + urlsplit(spec.default_base_url).path.rstrip("/")


def fill_placeholders(spec: ProviderSpec, url: str, options: Mapping[str, str]) -> str:
    """`{region}`/`{location}` in a base URL from the options (Vertex's `global` has no prefix)."""
    if options.get("location") == "global":
        url = url.replace("{location}-aiplatform", "aiplatform")
    url = re.sub(r"\{(\w+)\}", lambda m: options.get(m.group(1), m.group(0)), url)
    if missing := re.findall(r"\{(\w+)\}", url):
        hint = _option_hint(spec, missing[0])
        raise ConfigError(f"provider {spec.id!r} needs `{missing[0]}`: {hint}")
    return url


def _option_hint(spec: ProviderSpec, option: str) -> str:
    names = dict(spec.option_env).get(option, ())
    where = f"set {' or '.join(names[1:3] or names)}, or " if names else ""
    return f"{where}set {option} in [providers.{spec.id}] of {CONFIG_FILE_NAME}"


def normalise_base_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url


def find_key(
    spec: ProviderSpec, env: Mapping[str, str] | None = None, explicit: str | None = None,
) -> tuple[str | None, str | None]:
    """(key, where it came from): explicit > env vars in row order > literal key in the file."""
    env = os.environ if env is None else env
    if explicit:
        return explicit, "argument"
    for name in spec.key_env:
        if value := env.get(name):
            return value, name
    if key := _STATE.config.keys.get(spec.id):
        return key, "config file"
    return None, None


def _warn_key_format(spec: ProviderSpec, key: str | None) -> None:
    if key and (message := check_key_format(spec, key)):
        _log().warning("provider_key_format", provider=spec.id, message=message)


def provider_limits(spec: ProviderSpec, env: Mapping[str, str] | None = None) -> Limits:
    """Rate limits: `SLUICE_<ID>_RPM`/`_TPM`/`_MAX_IN_FLIGHT` > file > registry default."""
    env = os.environ if env is None else env
    stem = env_stem(spec.id)
    names = Limits.__struct_fields__
    values = {name: _env_int(env, f"SLUICE_{stem}_{name.upper()}") for name in names}
    return Limits(**{name: getattr(spec, name) if value is None else value
                     for name, value in values.items()})


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ConfigError(f"{name} must be a positive integer")
    return int(raw)


def provider_status(spec: ProviderSpec, env: Mapping[str, str] | None = None) -> ProviderStatus:
    """Can this provider be used as configured? Never raises, never reveals a key."""
    env = os.environ if env is None else env
    if not is_supported(spec):
        return ProviderStatus(False, "unsupported", "not supported yet")
    try:
        resolved = resolve_provider(spec, env)
    except MissingKeyError as exc:
        return ProviderStatus(False, "missing", f"set {' or '.join(exc.env_vars)}")
    except ConfigError as exc:
        return ProviderStatus(False, "needs-setup", str(exc))
    return _status_of(spec, env, resolved)


def _status_of(
    spec: ProviderSpec, env: Mapping[str, str], resolved: ResolvedProvider
) -> ProviderStatus:
    if resolved.key_source:
        return ProviderStatus(True, "key", f"key from {resolved.key_source}")
    if spec.local:
        return ProviderStatus(True, "local", "local server, no key needed")
    names = _credential_names(spec)
    if not names:
        return ProviderStatus(True, "keyless", "no key needed")
    options = resolved.endpoint.options
    if first_env(env, spec.credential_env) or any(options.get(n) for n in CREDENTIAL_OPTIONS):
        return ProviderStatus(True, "credentials", "cloud credentials configured")
    return ProviderStatus(False, "missing", f"set {' or '.join(names[:3])}")


def _credential_names(spec: ProviderSpec) -> tuple[str, ...]:
    """Env vars that would configure a cloud provider's credentials (for the hint)."""
    options = dict(spec.option_env)
    names = [*spec.credential_env, *(n for opt in CREDENTIAL_OPTIONS for n in options.get(opt, ()))]
    return tuple(dict.fromkeys(names))


SECRET_SUFFIXES: Final = ("_API_KEY", "_TOKEN", "_SECRET_ACCESS_KEY")


def configured_secrets(env: Mapping[str, str] | None = None) -> list[str]:
    """Every key value the environment and the config file hold: the scrubber's known secrets."""
    env = os.environ if env is None else env
    names = {name for spec in all_providers() for name in spec.key_env}
    names.update(n for n in env if n.endswith(SECRET_SUFFIXES))
    values = [env[n] for n in sorted(names) if env.get(n)]
    return values + [key for key in _STATE.config.keys.values() if key not in values]
