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


@click.group(cls=_Group)
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
    settings.set_values(values)
    profile = settings.active_profile_name()
    for name in values:
        click.echo(f"Set {name} in profile {profile!r}.")


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


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def plugins(as_json: bool) -> None:
    """List loaded plugins: distribution, version, what each registers, load errors."""
    from .plugins import get_registry

    infos = get_registry().plugins
    if as_json:
        import json

        click.echo(json.dumps([vars(i) for i in infos], indent=2))
        return
    for info in infos:
        origin = f"entry point {info.entry_point}" if info.entry_point else "built-in"
        state = "  disabled by STASHFLOW_DISABLE_PLUGINS" if info.disabled else ""
        click.echo(f"{info.name}  ({info.distribution} {info.version}, {origin}){state}")
        for kind, names in info.registered.items():
            click.echo(f"    {kind}: {', '.join(names)}")
        for error in info.errors:
            click.echo(f"    ERROR: {error}")


# -- blocks --------------------------------------------------------------------------


@main.group(cls=_Group)
def block() -> None:
    """Saved storage configurations, used by slug ("s3-bucket/my-block")."""


@block.command("ls")
def block_ls() -> None:
    """List saved blocks by slug."""
    from .blocks import list_blocks

    for slug in list_blocks():
        click.echo(slug)


@block.command("types")
def block_types() -> None:
    """List the storage block types installed, with their URL schemes."""
    from .plugins import get_registry

    registry = get_registry()
    for slug, cls in sorted(registry.storage_types.items()):
        fields = ", ".join(
            f"{n}{'*' if s else ''}" for n, (_, s) in cls._fields().items()
        )
        schemes = ", ".join(f"{s}://" for s in cls.url_schemes) or "-"
        owner = registry.owner("storage", slug)
        click.echo(f"{slug}  schemes: {schemes}  fields: {fields}  (plugin {owner})")


@block.command("inspect")
@click.argument("slug")
def block_inspect(slug: str) -> None:
    """Show a saved block's fields (secrets masked)."""
    from .blocks import load_block

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
    from .plugins import get_registry, install_hint

    cls = get_registry().storage_types.get(type_slug)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
