"""``python manage.py conveyor_worker MODULE:ATTRIBUTE [options]``: ``conveyor
worker`` with Django set up (settings, apps, the ORM) for the tasks it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from ....cli.worker import worker


class Command(BaseCommand):  # type: ignore[misc]
    """Runs ``conveyor worker`` with the rest of the command line."""

    help = "Run the tasks of a conveyor app (the arguments and options of `conveyor worker`)."

    def run_from_argv(self, argv: list[str]) -> None:
        # click parses the options, as `conveyor worker` does, and exits with its code.
        worker.main(args=argv[2:], prog_name=f"{Path(argv[0]).name} {argv[1]}")

    def print_help(self, prog_name: str, subcommand: str) -> None:
        """``manage.py help conveyor_worker``: the options of ``conveyor worker``."""
        worker.main(args=["--help"], prog_name=f"{prog_name} {subcommand}",
                    standalone_mode=False)

    def handle(self, *args: Any, **options: Any) -> None:
        raise CommandError("run it from the command line: manage.py conveyor_worker "
                           "MODULE:ATTRIBUTE [options]")
