"""`sluice providers`, `sluice discover`, `sluice models`: what sluice can talk to, and what is up.

The main group adds these with `main.add_command(...)` for each command in `COMMANDS`. Output is
readable in 100 columns; `--json` prints machine-readable data (never a key, only env var names).
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import click
import msgspec

from shared.catalog import models_for
from shared.config import provider_status, resolve_base_url
from shared.discovery import DEFAULT_TIMEOUT, DiscoveryResult, list_live_models
from shared.discovery import discover as run_discovery
from shared.errors import ProviderError, SluiceError
from shared.registry import ProviderSpec, all_providers, get
from shared.scrub import scrub

CONTEXT: Final = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
COLUMNS: Final = (("PROVIDER", 17), ("ADAPTER", 17), ("CATEGORY", 11), ("CONFIGURED", 17))
TABLE_WIDTH: Final = 100
STATE_LABELS: Final = {
    "key": "yes (key)", "local": "yes (local)", "credentials": "yes (credentials)",
    "keyless": "yes (no key)", "missing": "no", "needs-setup": "no (setup)",
    "unsupported": "not supported yet",
}


def _echo_json(data: Any) -> None:
    click.echo(msgspec.json.encode(data).decode())


def _fail(exc: SluiceError) -> click.ClickException:
    return click.ClickException(scrub(str(exc)))


# -- providers ---------------------------------------------------------------------------------
def provider_info(spec: ProviderSpec) -> dict[str, Any]:
    """One provider for `providers --json`: what it is and whether it is configured."""
    status = provider_status(spec)
    return {
        "id": spec.id, "display_name": spec.display_name, "adapter": spec.adapter,
        "category": spec.category, "local": spec.local, "configured": status.configured,
        "status": status.state, "hint": scrub(status.hint),
        "supported": status.state != "unsupported",
        "default_model": spec.default_model, "base_url": spec.default_base_url,
        "key_env": list(spec.key_env), "aliases": list(spec.aliases), "embeddings": spec.embeddings,
        "docs_url": spec.docs_url,
    }


def _cells(info: dict[str, Any]) -> list[str]:
    label = STATE_LABELS.get(info["status"], info["status"])
    model = info["default_model"] or "-"
    return [info["id"], info["adapter"], info["category"] or "-", label, model]


def format_row(cells: list[str]) -> str:
    """Fixed-width columns; the last one (model) is cut to fit `TABLE_WIDTH`."""
    parts = [cell[:width].ljust(width) for cell, (_, width) in zip(cells, COLUMNS, strict=False)]
    used = sum(width + 2 for _, width in COLUMNS)
    last = cells[-1]
    room = TABLE_WIDTH - used
    if len(last) > room:
        last = last[: room - 3] + "..."
    return "  ".join([*parts, last]).rstrip()


@click.command("providers", context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def providers(as_json: bool) -> None:
    """List every provider: adapter, category, whether it is configured, default model."""
    infos = [provider_info(spec) for spec in all_providers()]
    if as_json:
        _echo_json(infos)
        return
    click.echo(format_row([name for name, _ in COLUMNS] + ["DEFAULT MODEL"]))
    for info in infos:
        click.echo(format_row(_cells(info)))
    ready = sum(1 for info in infos if info["configured"])
    click.echo(f"\n{len(infos)} providers, {ready} ready. `sluice models PROVIDER` lists models;\n"
               "`sluice providers --json` names the env vars to set for each.")


# -- discover ----------------------------------------------------------------------------------
def format_result(result: DiscoveryResult) -> str:
    """`name  url  [OK] N model(s)` or `[OFFLINE]`, like ABI's `abi llm discover`."""
    state = f"[OK] {result.model_count} model(s)" if result.ok else "[OFFLINE]"
    return f"  {result.name:<18} {result.url:<32} {state}"


@click.command("discover", context_settings=CONTEXT)
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds to wait for each local server.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def discover(timeout: float, as_json: bool) -> None:
    """Probe the local model servers (Ollama, LM Studio, vLLM, llama.cpp, MLX, ...)."""
    if not as_json:
        click.echo("Scanning local providers...")
    results = asyncio.run(run_discovery(timeout))
    if as_json:
        _echo_json(results)
        return
    for result in results:
        click.echo(format_result(result))
    found = sum(1 for r in results if r.ok)
    click.echo(f"{found} of {len(results)} local providers reachable.")


# -- models ------------------------------------------------------------------------------------
async def _live(spec: ProviderSpec, timeout: float) -> tuple[list[str] | None, str | None]:
    """(live models, why not): only for local servers that publish a model list."""
    if not (spec.local and spec.discovery_path):
        return None, None
    try:
        return await list_live_models(spec, timeout), None
    except ProviderError as exc:
        return None, exc.message


@click.command("models", context_settings=CONTEXT)
@click.argument("provider")
@click.option("--timeout", type=float, default=DEFAULT_TIMEOUT, show_default=True,
              help="Seconds to wait for a local server's live list.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(provider: str, timeout: float, as_json: bool) -> None:
    """List a provider's curated models, plus the live list of a running local server."""
    try:
        spec = get(provider)
        curated = models_for(spec.id)
        url = resolve_base_url(spec)
    except SluiceError as exc:
        raise _fail(exc) from None
    live, error = asyncio.run(_live(spec, timeout))
    if as_json:
        _echo_json({"provider": spec.id, "curated": curated, "live": live, "live_error": error})
        return
    _print_models(spec, curated, live, error, url)


def _print_models(spec: ProviderSpec, curated: list[str], live: list[str] | None,
                  error: str | None, url: str) -> None:
    click.echo(f"Curated models for {spec.id} ({spec.display_name}):")
    for name in curated or ["(none curated: use the provider's own model names)"]:
        click.echo(f"  {name}")
    if live is not None:
        click.echo(f"Live models at {url} ({len(live)}):")
        for name in live:
            click.echo(f"  {name}")
    elif error is not None:
        click.echo(f"Server at {url} is offline: {error}")


COMMANDS: Final = [providers, discover, models]
