"""The `sluice` command. Each command is a thin shell over `producer.Client` and `workers.pool`."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import click
import msgspec

from producer.client import Client, request_source
from producer.export import export
from shared.config import Settings, load_settings
from shared.embedded import redis_url_or_embedded
from shared.errors import SluiceError
from shared.log import configure_logging
from shared.schema import TERMINAL_STATUSES, BatchState
from shared.scrub import scrub

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {scrub(message)}", err=True)
    sys.exit(code)


class SluiceGroup(click.Group):
    """Turns SluiceErrors into one clear, scrubbed line and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SluiceError as exc:
            fail(str(exc))


@click.group(cls=SluiceGroup, context_settings=CONTEXT)
@click.version_option(package_name="llm-sluice")
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING (default: WARNING for clients).")
@click.pass_context
def main(ctx: click.Context, log_level: str | None) -> None:
    """Push large volumes of LLM chat and embedding requests through many providers.

    Quick start: `sluice run requests.jsonl -o results.jsonl` (starts a private Redis and local
    workers when REDIS_URL is unset). Deployments run `sluice worker` processes against a shared
    REDIS_URL and submit with `sluice submit`.
    """
    ctx.obj = load_settings(log_level=log_level)
    configure_logging(log_level or "WARNING", ctx.obj.log_format)


def need_redis(settings: Settings) -> str:
    if not settings.redis_url:
        fail("set REDIS_URL (e.g. redis://localhost:6379/0) to reach your sluice deployment; "
             "`sluice run` works without it on a private Redis")
    return settings.redis_url


# -- run: the whole job on one machine -------------------------------------------------------
@main.command(context_settings=CONTEXT)
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write OpenAI batch output JSONL.")
@click.option("--provider", help="Provider for every request (else from a `provider/model` prefix).")
@click.option("--model", help="Model for a plain prompt file (one prompt per line).")
@click.option("--workers", "processes", type=int, default=None,
              help="Local worker processes to start [default: one per CPU, or none when REDIS_URL "
                   "has live workers for every provider in the file].")
@click.option("--concurrency", type=int, default=None, help="Requests in flight per worker process.")
@click.option("--chunk-size", type=int, default=None, help="Requests per queued job.")
@click.option("--partial", is_flag=True, help="Submit the valid lines even if some are malformed.")
@click.option("--fallback", "fallbacks", multiple=True, metavar="PROVIDER/MODEL",
              help="Route to fail over to, in order (repeatable), e.g. --fallback groq/llama-3.3-70b.")
@click.option("--deadline", type=float, default=None, metavar="SECONDS",
              help="Stop retrying a request this long after submission (it fails with deadline_exceeded).")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.pass_obj
def run(settings: Settings, input_file: Path, output: Path, provider: str | None, model: str | None,
        processes: int | None, concurrency: int | None, chunk_size: int | None, partial: bool,
        fallbacks: tuple[str, ...], deadline: float | None, no_progress: bool) -> None:
    """Run a batch end to end: queue, local workers, progress, results file."""
    settings = msgspec.structs.replace(
        settings, **_overrides(concurrency=concurrency, chunk_size=chunk_size)
    )
    embedded = not settings.redis_url
    with redis_url_or_embedded(settings.redis_url) as url:
        client = Client(url, settings)
        batch_id, report = client.submit_file(input_file, provider=provider, model=model,
                                              partial=partial, check_keys="local", fallbacks=fallbacks,
                                              deadline=deadline)
        _report_skipped(report)
        state = client.status(batch_id)
        count = _local_workers(processes, embedded, client, state.providers)
        with _local_pool(state.providers, count, url, settings):
            state = client.wait(batch_id, progress=None if no_progress else ProgressBar(state))
        order = _custom_ids(input_file, provider, model)
        written = export(client.store, batch_id, output, order=order)
        _summary(state, written, output)


def _local_workers(processes: int | None, embedded: bool, client: Client, providers: tuple[str, ...]) -> int:
    """How many local worker processes `run` starts: as asked; else none when a shared Redis
    already has live workers for every provider in the batch; else one per CPU."""
    from producer.client import serving_providers

    if processes is not None:
        return max(1, processes) if embedded else processes
    if not embedded and set(providers) <= serving_providers(client.redis):
        click.echo("using the workers already serving this Redis", err=True)
        return 0
    return os.cpu_count() or 2


def _overrides(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


@contextlib.contextmanager
def _local_pool(providers: tuple[str, ...], processes: int, url: str, settings: Settings) -> Iterator[None]:
    if processes <= 0:
        yield
        return
    from workers.pool import WorkerPool

    env = {**os.environ, **_settings_env(settings)}
    with WorkerPool(providers, processes, redis_url=url, env=env, grace=5.0):
        yield


def _settings_env(settings: Settings) -> dict[str, str]:
    """What worker processes need to see the same settings (and config file) as this command."""
    env = {
        "SLUICE_CONCURRENCY": str(settings.concurrency),
        "SLUICE_CHUNK_SIZE": str(settings.chunk_size),
        "SLUICE_SLOTS": str(settings.slots),
        "SLUICE_LOG_LEVEL": os.environ.get("SLUICE_LOG_LEVEL", "WARNING"),
    }
    if settings.config_path:
        env["SLUICE_CONFIG"] = str(Path(settings.config_path).resolve())
    return env


def _custom_ids(path: Path, provider: str | None, model: str | None) -> Iterator[str]:
    for item in request_source(path, provider=provider, model=model, kind="chat")():
        if not isinstance(item, SluiceError):
            yield item.custom_id


def _report_skipped(report: Any) -> None:
    for error in report.errors[:20]:
        click.echo(f"skipped: {scrub(str(error))}", err=True)
    if len(report.errors) > 20:
        click.echo(f"... and {len(report.errors) - 20} more skipped lines", err=True)


class ProgressBar:
    """A tqdm bar fed by polled batch state: done/failed/rate/ETA."""

    def __init__(self, state: BatchState) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=state.counts.total, unit="req", dynamic_ncols=True, file=sys.stderr,
                        disable=None)
        self.done = 0

    def __call__(self, state: BatchState) -> None:
        done = state.counts.done
        self.bar.update(done - self.done)
        self.done = done
        self.bar.set_postfix(failed=state.counts.failed, refresh=False)
        if state.status in TERMINAL_STATUSES:
            self.bar.close()


def _summary(state: BatchState, written: int | None = None, output: Path | None = None) -> None:
    c = state.counts
    line = f"{state.batch_id}: {state.status}, {c.completed} succeeded, {c.failed} failed"
    if written is not None:
        line += f"; {written} result lines written" + (f" to {output}" if output else "")
    click.echo(line, err=True)


# -- deployment commands ---------------------------------------------------------------------
@main.command(context_settings=CONTEXT)
@click.option("--providers", default=None,
              help="Comma-separated provider ids to serve [default: every provider].")
@click.option("--processes", type=int, default=None, help="Worker processes [default: CPU count].")
@click.option("--concurrency", type=int, default=None, help="Requests in flight per process.")
@click.option("--burst", is_flag=True, help="Exit once the queues are empty and no hand-back is waiting.")
@click.option("--rpm", type=int, default=None, help="Requests/min limit for each served provider and key.")
@click.option("--tpm", type=int, default=None, help="Tokens/min limit for each served provider and key.")
@click.option("--max-in-flight", type=int, default=None,
              help="Concurrent requests limit for each served provider and key (across every worker).")
@click.pass_obj
def worker(settings: Settings, providers: str | None, processes: int | None,
           concurrency: int | None, burst: bool, rpm: int | None, tpm: int | None,
           max_in_flight: int | None) -> None:
    """Serve provider queues with a pool of worker processes (a dead process is replaced).

    Limits given here override the config file and registry; per provider they can also be set
    with SLUICE_<PROVIDER>_RPM / _TPM / _MAX_IN_FLIGHT in the environment.
    """
    from shared.registry import all_providers, env_stem, get
    from workers.pool import WorkerPool

    url = need_redis(settings)
    ids = [get(p).id for p in providers.split(",") if p] if providers else [p.id for p in all_providers()]
    settings = msgspec.structs.replace(settings, **_overrides(concurrency=concurrency))
    env = {**os.environ, **_settings_env(settings), "SLUICE_LOG_LEVEL": settings.log_level}
    limits = _overrides(RPM=rpm, TPM=tpm, MAX_IN_FLIGHT=max_in_flight)
    env.update({f"SLUICE_{env_stem(pid)}_{name}": str(value) for pid in ids for name, value in limits.items()})
    count = processes or os.cpu_count() or 2
    click.echo(f"sluice worker: {count} processes serving {', '.join(ids)}", err=True)
    sys.exit(WorkerPool(ids, count, redis_url=url, env=env, burst=burst).run())


@main.command(context_settings=CONTEXT)
@click.argument("input_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--provider", help="Provider for every request (else from a `provider/model` prefix).")
@click.option("--model", help="Model for a plain prompt file.")
@click.option("--partial", is_flag=True, help="Submit the valid lines even if some are malformed.")
@click.option("--wait", "wait_", is_flag=True, help="Block with a progress bar until done.")
@click.option("--fallback", "fallbacks", multiple=True, metavar="PROVIDER/MODEL",
              help="Route to fail over to, in order (repeatable), e.g. --fallback groq/llama-3.3-70b.")
@click.option("--deadline", type=float, default=None, metavar="SECONDS",
              help="Stop retrying a request this long after submission (it fails with deadline_exceeded).")
@click.pass_obj
def submit(settings: Settings, input_file: Path, provider: str | None, model: str | None,
           partial: bool, wait_: bool, fallbacks: tuple[str, ...], deadline: float | None) -> None:
    """Queue a batch file for the running workers; prints the batch id."""
    client = Client(need_redis(settings), settings)
    batch_id, report = client.submit_file(input_file, provider=provider, model=model, partial=partial,
                                          fallbacks=fallbacks, deadline=deadline)
    _report_skipped(report)
    click.echo(batch_id)
    if wait_:
        state = client.wait(batch_id, progress=ProgressBar(client.status(batch_id)))
        _summary(state)


@main.command(context_settings=CONTEXT)
@click.argument("batch_id")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def status(settings: Settings, batch_id: str, as_json: bool) -> None:
    """Show a batch's lifecycle status, request counts, tokens and usage by model."""
    state = Client(need_redis(settings), settings).status(batch_id)
    if as_json:
        click.echo(msgspec.json.encode(state_dict(state)).decode())
        return
    c = state.counts
    click.echo(f"batch     {state.batch_id}\nstatus    {state.status}\n"
               f"requests  {c.done}/{c.total} done ({c.completed} completed, {c.failed} failed)\n"
               f"tokens    {state.prompt_tokens} prompt, {state.completion_tokens} completion")
    if state.usage_by_model:
        click.echo("usage by provider/model:")
    for route, usage in sorted(state.usage_by_model.items()):
        click.echo(f"  {route:40} {usage.get('calls', 0):>8} calls {usage.get('prompt_tokens', 0):>10} in "
                   f"{usage.get('completion_tokens', 0):>10} out")


@main.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def limits(settings: Settings, as_json: bool) -> None:
    """Show what the workers' shared limiter holds: limits learned from provider headers or from
    bare 429s, cooldowns under way, requests in flight, and hand-backs waiting to run again.
    (Configured limits are each worker's settings: `sluice worker --rpm`, SLUICE_<P>_RPM.)"""
    import redis

    from shared.limiter import read_scopes
    from workers.requeue import deferred_summary

    client = redis.Redis.from_url(need_redis(settings))
    scopes, waiting = read_scopes(client), deferred_summary(client)
    if as_json:
        data = {"scopes": msgspec.to_builtins(scopes),
                "deferred": {p: {"chunks": n, "next_due_s": due} for p, (n, due) in waiting.items()}}
        click.echo(msgspec.json.encode(data).decode())
        return
    if not scopes and not waiting:
        click.echo("no limiter state: nothing learned, no cooldown, nothing handed back")
    if scopes:
        click.echo(f"{'scope (provider:key:model)':48} {'hdr rpm':>9} {'hdr tpm':>10} {'aimd rpm':>9} "
                   f"{'cooldown':>9} {'in flight':>9}")
    for v in scopes:
        click.echo(f"{v.scope:48} {_num(v.header_rpm):>9} {_num(v.header_tpm):>10} {_num(v.aimd_rpm):>9} "
                   f"{v.cooldown_s:>8.1f}s {v.in_flight:>9}")
    for provider, (count, due) in waiting.items():
        click.echo(f"{provider}: {count} handed-back chunk(s) waiting, next due in {due:.1f}s")


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def state_dict(state: BatchState) -> dict[str, Any]:
    data: dict[str, Any] = msgspec.to_builtins(state)
    data["request_counts"] = {"total": state.counts.total, "completed": state.counts.completed,
                              "failed": state.counts.failed}
    return data


@main.command(context_settings=CONTEXT)
@click.argument("batch_id")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Output file [default: stdout].")
@click.pass_obj
def results(settings: Settings, batch_id: str, output: Path | None) -> None:
    """Write a batch's results as OpenAI batch output JSONL."""
    client = Client(need_redis(settings), settings)
    client.status(batch_id)
    written = export(client.store, batch_id, output)
    if output:
        click.echo(f"{written} result lines written to {output}", err=True)


@main.command(context_settings=CONTEXT)
@click.argument("batch_id")
@click.option("--from", "after", default="0", help="Stream position to resume after [default: start].")
@click.option("--follow/--no-follow", default=True, help="Keep waiting until the batch is done.")
@click.pass_obj
def watch(settings: Settings, batch_id: str, after: str, follow: bool) -> None:
    """Print results as they arrive: `<position> <custom_id> ok|failed <status> <provider/model>`."""
    client = Client(need_redis(settings), settings)
    client.status(batch_id)
    for event in client.subscribe(batch_id, after=after, until_done=True, block_ms=1000 if follow else None):
        mark = "ok" if event.ok else "failed"
        click.echo(f"{event.position} {event.custom_id} {mark} {event.status_code} "
                   f"{event.provider}/{event.model}")


@main.command(context_settings=CONTEXT)
@click.argument("batch_id")
@click.pass_obj
def cancel(settings: Settings, batch_id: str) -> None:
    """Cancel a batch: requests not yet run are recorded as failed with `batch_cancelled`."""
    state = Client(need_redis(settings), settings).cancel(batch_id)
    click.echo(f"{batch_id}: {state.status}")


@main.command(context_settings=CONTEXT)
@click.argument("batch_id")
@click.option("--wait", "wait_", is_flag=True, help="Block with a progress bar until done.")
@click.pass_obj
def retry(settings: Settings, batch_id: str, wait_: bool) -> None:
    """Run a batch's failed requests again (their old results are replaced)."""
    client = Client(need_redis(settings), settings)
    count = client.retry(batch_id)
    click.echo(f"{batch_id}: {count} failed requests re-enqueued")
    if wait_ and count:
        state = client.wait(batch_id, progress=ProgressBar(client.status(batch_id)))
        _summary(state)


@main.command(context_settings=CONTEXT)
@click.argument("corpus", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--model", required=True, help="Embedding model, e.g. openai/text-embedding-3-small.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Where to write vectors JSONL: {\"line\", \"embedding\"} per input line.")
@click.option("--provider", help="Provider (else from the model's `provider/` prefix).")
@click.option("--workers", "processes", type=int, default=None, help="Local worker processes.")
@click.option("--batch-size", type=int, default=64, help="Input lines per embedding request.")
@click.pass_obj
def embed(settings: Settings, corpus: Path, model: str, output: Path, provider: str | None,
          processes: int | None, batch_size: int) -> None:
    """Embed a text file, one input per line, into a vectors JSONL file in input order."""
    from producer.embed import embed_corpus

    with redis_url_or_embedded(settings.redis_url) as url:
        client = Client(url, settings)
        count = processes if processes is not None else (os.cpu_count() or 2)
        written = embed_corpus(client, corpus, output, model=model, provider=provider,
                               batch_size=batch_size, pool=lambda p: _local_pool(p, count, url, settings),
                               progress=ProgressBar)
    click.echo(f"{written} vectors written to {output}", err=True)


def _register_optional_commands() -> None:
    with contextlib.suppress(ImportError):
        from producer.cli_providers import COMMANDS

        for command in COMMANDS:
            main.add_command(command)


_register_optional_commands()


if __name__ == "__main__":
    main()
