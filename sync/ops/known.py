"""Which definitions an operator command may name: those the deployment's hosts published
(``sync.state.deployment``), not those the operator's own shell happens to define.

Before any host has published (a deployment never started since it was installed), the
settings of the shell are used when they describe a deployment (``SYNC_DEFINITIONS``,
``SYNC_DEFINITION``, ``SYNC_ENVIRONMENTS`` or ``DATAVERSE_URL``), and the command says so;
with none of them there is nothing to check a name against, and the command refuses.

Every name goes through the app's one name rule (``sync.config.lanes.NAME``) before it is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from azure.data.tables.aio import TableClient

from sync.config.definitions import definitions_from
from sync.config.lanes import check_name, parse_environments
from sync.failures.errors import ConfigError
from sync.ops.outcome import CommandError, NotFound
from sync.state.deployment import Published, published_of, read_published

DEPLOYMENT_SETTINGS: Final = ("SYNC_DEFINITIONS", "SYNC_DEFINITION", "SYNC_ENVIRONMENTS",
                              "DATAVERSE_URL")
PUBLISHED: Final = "as the deployment's hosts published them"
NONE_PUBLISHED: Final = ("no host of this deployment has published its definitions yet (hosts "
                         "publish them when they start)")


@dataclass(frozen=True, slots=True)
class Known:
    """The definitions a command may name, and where they come from."""

    definitions: tuple[Published, ...]
    source: str

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(item.name for item in self.definitions)

    def get(self, name: str) -> Published:
        """The definition ``name``; ``NotFound`` listing the known ones."""
        check_definition_name(name)
        found = next((item for item in self.definitions if item.name == name), None)
        if found is None:
            raise NotFound(self._unknown(f"no definition {name!r}"))
        return found

    def choose(self, name: str | None) -> Published:
        """``name``, or the only definition when none is named."""
        if name is not None:
            return self.get(name)
        if len(self.definitions) == 1:
            return self.definitions[0]
        raise NotFound(self._unknown("name the definition with --definition NAME"))

    def _unknown(self, first: str) -> str:
        if not self.definitions:
            return (f"{first}: {self.source}; start the app (or `python -m sync local "
                    "--keep`), or export the deployment's settings here (SYNC_DEFINITIONS)")
        return f"{first}; the deployment runs: {', '.join(self.names)} ({self.source})"


def check_definition_name(name: str, flag: str = "--definition") -> None:
    """``CommandError`` unless ``name`` follows the app's name rule."""
    try:
        check_name(name, f"{flag} {name!r}")
    except ConfigError as error:
        raise CommandError(str(error)) from None


async def known_definitions(state: TableClient, environ: Mapping[str, str]) -> Known:
    """The published definitions, else the shell's (see the module)."""
    published = await read_published(state)
    if published:
        return Known(tuple(published), PUBLISHED)
    if not any((environ.get(name) or "").strip() for name in DEPLOYMENT_SETTINGS):
        return Known((), NONE_PUBLISHED)
    return Known(tuple(shell_definitions(environ)),
                 f"{NONE_PUBLISHED}: taken from this shell's settings")


def shell_definitions(environ: Mapping[str, str]) -> list[Published]:
    """The definitions the shell's settings describe (names, environments and lanes only)."""
    try:
        definitions = definitions_from(environ)
        value = (environ.get("SYNC_ENVIRONMENTS") or "").strip()
        environments = parse_environments(value) if value else ()
    except ConfigError as error:
        raise CommandError(f"this shell's settings do not describe a deployment: {error}"
                           ) from None
    return published_of(definitions, environments, host="", now_s=0.0)


async def check_published(state: TableClient, name: str) -> None:
    """``NotFound`` when hosts published their definitions and ``name`` is not one of them;
    ``CommandError`` for a name the app would never accept."""
    published = await read_published(state)
    if published:
        Known(tuple(published), PUBLISHED).get(name)
    else:
        check_definition_name(name)
