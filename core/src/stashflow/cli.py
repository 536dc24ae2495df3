"""The `stashflow` command line."""

from __future__ import annotations

import sys

import click

from . import settings
from .exceptions import StashflowError


class _Group(click.Group):
    """Turns stashflow's typed errors into one clear line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except StashflowError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="stashflow")
def main() -> None:
    """Persist and cache the results of tasks and flows."""


# -- config --------------------------------------------------------------------------


@main.group(cls=_Group)
def config() -> None:
    """Show and change settings in the active profile ($STASHFLOW_HOME/profiles.toml)."""


def _pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    values = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise click.BadParameter(f"{pair!r} is not NAME=VALUE", param_hint="K=V")
        values[name.strip()] = value
    return values


@config.command("set")
@click.argument("pairs", nargs=-1, required=True, metavar="NAME=VALUE...")
def config_set(pairs: tuple[str, ...]) -> None:
    """Set one or more settings in the active profile."""
    values = _pairs(pairs)
    for name, value in values.items():
        _check_names_exist(name, value)
    settings.set_values(values)
    profile = settings.active_profile_name()
    for name in values:
        click.echo(f"Set {name} in profile {profile!r}.")


def _check_names_exist(name: str, value: str) -> None:
    """A serializer or block a setting names must exist now, not at the next run."""
    canonical = settings.ALIASES.get(name, name)
    if canonical == "STASHFLOW_RESULTS_DEFAULT_SERIALIZER" and value.strip():
        from .registry import get_registry, resolve_serializer

        try:
            resolve_serializer(value.strip(), get_registry())
        except StashflowError as exc:
            import difflib

            close = difflib.get_close_matches(value.strip(), get_registry().serializers, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise click.BadParameter(f"{exc}{hint}", param_hint=name) from None
    elif canonical == "STASHFLOW_DEFAULT_RESULT_STORAGE_BLOCK" and value.strip():
        from .blocks import list_blocks

        saved = list_blocks()
        if value.strip() not in saved:
            raise click.BadParameter(
                f"no block is saved as {value.strip()!r} (saved: {', '.join(saved) or 'none'}); "
                "save it first with `stashflow block create TYPE NAME --set FIELD=VALUE`",
                param_hint=name)


@config.command("unset")
@click.argument("names", nargs=-1, required=True)
def config_unset(names: tuple[str, ...]) -> None:
    """Remove settings from the active profile (their defaults apply again)."""
    settings.unset_values(list(names))
    for name in names:
        click.echo(f"Unset {name}.")


@config.command("view")
@click.option("--show-sources", is_flag=True, help="Say where each value came from.")
def config_view(show_sources: bool) -> None:
    """Print every setting as NAME=value."""
    for name in settings.SETTINGS:
        value, source = settings.get_with_source(name)
        line = f"{name}={settings.display_value(name, value)}"
        click.echo(f"{line}  ({source})" if show_sources else line)


# -- plugins -------------------------------------------------------------------------


@main.group(cls=_Group)
def profile() -> None:
    """Named sets of settings ($STASHFLOW_HOME/profiles.toml); one is active."""


@profile.command("ls")
def profile_ls() -> None:
    """List the profiles, the active one marked with *."""
    active = settings.active_profile_name()
    for name in settings.profile_names():
        click.echo(f"{'*' if name == active else ' '} {name}")


@profile.command("create")
@click.argument("name")
@click.option("--from", "copy_from", metavar="PROFILE", help="Start with this profile's settings.")
def profile_create(name: str, copy_from: str | None) -> None:
    """Create a profile (empty, or a copy of --from)."""
    settings.create_profile(name, copy_from)
    click.echo(f"Created profile {name!r}; `stashflow profile use {name}` makes it active.")


@profile.command("use")
@click.argument("name")
def profile_use(name: str) -> None:
    """Make NAME the active profile (STASHFLOW_PROFILE, when set, still wins)."""
    settings.use_profile(name)
    click.echo(f"Profile {name!r} is now active.")


@profile.command("delete")
@click.argument("name")
def profile_delete(name: str) -> None:
    """Delete a profile that is not active."""
    settings.delete_profile(name)
    click.echo(f"Deleted profile {name!r}.")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List loaded plugins: distribution, version, what each registers, load errors."""
    import warnings

    from .exceptions import PluginWarning
    from .registry import get_registry

    with warnings.catch_warnings():  # the listing says it all, once
        warnings.simplefilter("ignore", PluginWarning)
        infos = get_registry().plugins
    if as_json:
        import json

        click.echo(json.dumps([vars(i) for i in infos], indent=2))
        if any(info.failed for info in infos):
            raise SystemExit(1)
        return
    for info in infos:
        if info.whole_distribution:
            click.echo(f"{info.distribution}  ({info.version}, no plugin loaded)")
        else:
            origin = f"entry point {info.entry_point}" if info.entry_point else "built-in"
            state = "  disabled by STASHFLOW_DISABLE_PLUGINS" if info.disabled else ""
            click.echo(f"{info.name}  ({info.distribution} {info.version}, {origin}){state}")
        for kind, names in info.registered.items():
            click.echo(f"    {kind}: {', '.join(names)}")
        for error in info.errors:
            click.echo(f"    ERROR: {error}")
    failed = [info for info in infos if info.failed]
    if failed:
        click.echo(f"{len(failed)} plugin(s) failed to load or register something; see ERROR "
                   "above (STASHFLOW_TRACE_PLUGINS=1 shows where)", err=True)
        raise SystemExit(1)


# -- blocks --------------------------------------------------------------------------


@main.group(cls=_Group)
def block() -> None:
    """Saved storage configurations, used by slug ("s3-bucket/my-block")."""


@block.command("ls")
def block_ls() -> None:
    """List saved blocks by slug."""
    from .blocks import list_blocks

    slugs = list_blocks()
    for slug in slugs:
        click.echo(slug)
    if not slugs:
        click.echo("No saved blocks: `stashflow block create TYPE NAME --set FIELD=VALUE` "
                   "saves one (`stashflow block types` lists the types).", err=True)


@block.command("types")
def block_types() -> None:
    """List the block types installed: storage (with its URL schemes) and the others."""
    from .registry import get_registry

    registry = get_registry()
    for slug, cls in sorted(registry.block_types.items()):
        fields = ", ".join(
            f"{n}{'*' if s else ''}" for n, (_, s) in cls._fields().items()
        )
        schemes = ", ".join(f"{s}://" for s in getattr(cls, "url_schemes", ())) or "-"
        owner = registry.owner("storage", slug) or registry.owner("block", slug)
        click.echo(f"{slug}  schemes: {schemes}  fields: {fields}  (plugin {owner})")


@block.command("inspect")
@click.argument("slug")
def block_inspect(slug: str) -> None:
    """Show a saved block's fields (secrets masked)."""
    from .registry import load_block

    blk = load_block(slug)
    click.echo(f"{slug}  ({type(blk).__name__})")
    for name, value in blk.field_values().items():
        click.echo(f"  {name} = {'' if value is None else value}")


@block.command("delete")
@click.argument("slug")
def block_delete(slug: str) -> None:
    """Delete a saved block."""
    from .blocks import delete_block

    delete_block(slug)
    click.echo(f"Deleted {slug}.")


@block.command("create")
@click.argument("type_slug")
@click.argument("name")
@click.option("--set", "pairs", multiple=True, metavar="FIELD=VALUE", help="A field value.")
@click.option("--overwrite", is_flag=True, help="Replace a block saved under the same name.")
def block_create(type_slug: str, name: str, pairs: tuple[str, ...], overwrite: bool) -> None:
    """Save a block of TYPE_SLUG under NAME."""
    from .blocks import coerce
    from .exceptions import StorageNotFound
    from .plugins import install_hint
    from .registry import get_registry

    cls = get_registry().block_types.get(type_slug)
    if cls is None:
        hint = install_hint("storage", type_slug) or "`stashflow block types` lists the installed types"
        raise StorageNotFound(f"unknown block type {type_slug!r}: {hint}")
    values = {k: coerce(cls, k, v) for k, v in _pairs(pairs).items()}
    try:
        blk = cls(**values)
    except TypeError as exc:
        raise click.UsageError(str(exc)) from None
    slug = blk.save(name, overwrite=overwrite)
    click.echo(f"Saved {slug}.")


@main.command()
@click.option("--keep", is_flag=True,
              help="Keep records of an earlier demo (then even the first run is cached).")
def demo(keep: bool) -> None:
    """Run a small flow twice on the local default storage; the second run is cached."""
    from .engine.demo import run_demo

    run_demo(fresh=not keep, echo=click.echo)


# -- results -------------------------------------------------------------------------

_STORAGE_HELP = "Storage: a URL, a block slug or a path (default: the configured default storage)."
_PROGRESS_AFTER = 200  # records: fewer than this finish without a progress bar


@main.group(cls=_Group)
def results() -> None:
    """List, inspect, remove and garbage-collect stored result records."""


def _store(storage: str | None):
    from pathlib import Path

    from .results import ResultStore

    store = ResultStore(storage)
    basepath = getattr(store.storage, "basepath", None)
    if storage is not None and basepath is not None and not Path(basepath).is_dir():
        raise click.ClickException(f"no storage at {basepath}: the folder does not exist "
                                   "(check --storage)")
    return store


def _when(value) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else "never"


def _record_fields(record) -> dict[str, object]:
    from datetime import UTC, datetime

    expired = record.is_expired(datetime.now(UTC))
    return {"key": record.key, "size": record.size, "serializer": record.serializer,
            "created": _when(record.created) if record.metadata else None,
            "expires": _when(record.expiration) if record.metadata else None,
            "expired": expired, "problem": record.problem, "skipped": False}


def _skipped_fields(entry) -> dict[str, object]:
    from .maintenance import printable

    return {"key": entry.shown, "size": None, "serializer": None, "created": None,
            "expires": None, "expired": False, "problem": printable(entry.reason), "skipped": True}


@results.command("ls")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--prefix", default="", help="Only keys starting with this.")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object per line, skipped entries too (\"skipped\": true, and why).")
def results_ls(storage: str | None, prefix: str, as_json: bool) -> None:
    """List records: key, size in bytes, serializer, created, expires (headers only)."""
    import json

    from .maintenance import skipped_summary

    listing = _store(storage).records(prefix)
    rows = sorted(listing, key=lambda r: r.key)
    if as_json:
        for record in rows:
            click.echo(json.dumps(_record_fields(record)))
        for entry in listing.skipped:
            click.echo(json.dumps(_skipped_fields(entry)))
        return
    table = [("KEY", "SIZE", "SERIALIZER", "CREATED", "EXPIRES")]
    for record in rows:
        f = _record_fields(record)
        if record.metadata is None:
            table.append((record.key, "-", "-", "-", f"damaged: {record.problem}"))
        else:
            expires = f"{f['expires']} (expired)" if f["expired"] else f["expires"]
            table.append((record.key, str(f["size"]), f["serializer"], f["created"], expires))
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    for row in table:
        click.echo("  ".join([*(cell.ljust(w) for cell, w in zip(row, widths, strict=False)), row[4]]))
    click.echo(f"{len(rows)} record{'' if len(rows) == 1 else 's'}", err=True)
    if listing.skipped:
        click.echo(f"{skipped_summary(listing.skipped)}; see --json", err=True)


@results.command("show")
@click.argument("key")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--value", "with_value", is_flag=True,
              help="Also decode and print the value: verified first, and only with a trusted "
                   "serializer (STASHFLOW_RESULTS_TRUSTED_SERIALIZERS). Decoding pickle runs code "
                   "from the record: see the trust model in docs/concepts/guarantees.md.")
def results_show(key: str, storage: str | None, with_value: bool) -> None:
    """Show a record's metadata (and its value only with --value)."""
    import pprint

    from .exceptions import ResultNotFound
    from .keys import validate_key
    from .maintenance import describe

    store = _store(storage)
    try:
        record = describe(store.storage, validate_key(key))
    except FileNotFoundError:
        raise ResultNotFound(key, store.storage) from None
    click.echo(f"key: {key}")
    click.echo(f"location: {store.storage.url_for(key)}")
    if record.metadata is None:
        click.echo(f"damaged: {record.problem}")
        raise SystemExit(1)
    meta, f = record.metadata, _record_fields(record)
    click.echo(f"size: {record.size} bytes (payload {meta.size})")
    click.echo(f"serializer: {meta.serializer}")
    click.echo(f"created: {f['created']}")
    click.echo(f"expires: {f['expires']}{' (expired)' if f['expired'] else ''}")
    click.echo(f"signed: {'yes' if meta.signed else 'no'}")
    click.echo(f"digest: xxh3-128:{meta.digest}")
    if with_value:
        from .results import ResultExpired

        try:
            value = store.read(key)
        except ResultExpired:
            click.echo("value: (expired; not decoded)")
            return
        click.echo("value:")
        click.echo(pprint.pformat(value))


@results.command("rm")
@click.argument("keys", nargs=-1)
@click.option("--prefix", help="Remove every record whose key starts with this.")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
def results_rm(keys: tuple[str, ...], prefix: str | None, storage: str | None, dry_run: bool) -> None:
    """Remove the records at KEYS, or every record under --prefix."""
    from .maintenance import printable, remove, remove_prefix, skipped_summary

    if bool(keys) == (prefix is not None):
        raise click.UsageError("give either KEYS or --prefix")
    store = _store(storage)
    if prefix is not None:
        removed = remove_prefix(store.storage, prefix, dry_run=dry_run)
    else:
        removed = remove(store.storage, keys, dry_run=dry_run)
    verb = "Would remove" if dry_run else "Removed"
    for key in removed:
        click.echo(f"{verb} {key}")
    skipped = {entry.name for entry in removed.skipped}
    missing = [k for k in keys if k not in removed and k not in skipped]
    for key in missing:
        click.echo(f"No record at {printable(key)}", err=True)
    for entry in removed.skipped:
        click.echo(f"Skipped {entry}", err=True)
    click.echo(f"{verb} {len(removed)} records.", err=True)
    if removed.skipped:
        click.echo(f"{skipped_summary(removed.skipped)}.", err=True)
    if missing or (keys and removed.skipped):
        raise SystemExit(1)


def _duration(_ctx, _param, value: str | None):
    from .durations import parse_duration

    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@results.command("gc")
@click.option("--storage", help=_STORAGE_HELP)
@click.option("--expired", is_flag=True, help="Remove expired records (the default when no "
                                              "--older-than is given).")
@click.option("--older-than", callback=_duration, metavar="DURATION",
              help="Remove records created longer ago than this: 30m, 12h, 7d.")
@click.option("--temp-grace", callback=_duration, metavar="DURATION", default="1h",
              show_default=True, help="Remove orphaned temp files untouched for this long.")
@click.option("--dry-run", is_flag=True, help="Say what would be removed; remove nothing.")
@click.option("-v", "--verbose", is_flag=True,
              help="Name each record and temp file removed, and each entry skipped.")
def results_gc(storage: str | None, expired: bool, older_than, temp_grace, dry_run: bool,
               verbose: bool) -> None:
    """Reclaim expired records, old records and orphaned temp files."""
    from .maintenance import printable

    store = _store(storage)
    if older_than is None:
        expired = True
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None and total >= _PROGRESS_AFTER:
            bar = click.progressbar(length=total, label="Examining records", file=sys.stderr)
            bar.__enter__()
        if bar is not None:
            bar.update(done - bar.pos)

    try:
        report = store.gc(expired=expired, older_than=older_than, dry_run=dry_run,
                          progress=progress, temp_grace=temp_grace)
    finally:
        if bar is not None:
            bar.__exit__(None, None, None)
    if verbose or dry_run:
        verb = "would remove" if dry_run else "removed"
        for key in sorted(report.removed):
            click.echo(f"{verb} {key}")
        for path in report.temp_files:
            click.echo(f"{verb} temp file {printable(path)}")
    if verbose:
        for entry in report.skipped:
            click.echo(f"skipped {entry}")
    summary = report.summary()
    click.echo(summary[0].upper() + summary[1:] + ".")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
