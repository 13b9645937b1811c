"""scripts/install: a wheel in a fresh virtualenv that runs, templates included, with the
source tree out of reach; and the Dockerfile, which runs the same script on the same files."""

from __future__ import annotations

import filecmp
import os
import re
import shutil
import subprocess
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from monitor.cli import main
from monitor.config.model import HttpConfig, StateConfig
from monitor.notify.templates import shipped_folder
from tests import fleet

REPOSITORY = Path(__file__).resolve().parents[1]
LOCAL = "ec000301"
IMAGE_PREFIX = Path("/opt/bma-monitor")


def docker_context(destination: Path) -> Path:
    """A copy of what the image's build sees: only the paths .dockerignore lets back in."""
    patterns = [
        line.strip()
        for line in (REPOSITORY / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "the image's build context is an allow-list"
    for kept in (p.removeprefix("!").rstrip("/") for p in patterns if p.startswith("!")):
        source, target = REPOSITORY / kept, destination / kept
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, target)
    return destination


@pytest.fixture(scope="module")
def prefix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """bma-monitor installed into a temporary prefix by scripts/install, run as the image's
    builder stage runs it: from a copy of the build context, not the source tree."""
    context = docker_context(tmp_path_factory.mktemp("context"))
    target = tmp_path_factory.mktemp("install") / "bma-monitor"
    done = subprocess.run(
        [context / "scripts" / "install", target],
        capture_output=True,
        text=True,
        env=outside_env(),
        cwd=tmp_path_factory.getbasetemp(),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"installed bma-monitor {version()} in {target}"
    yield target


def version() -> str:
    """The version pyproject.toml gives."""
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())["project"]
    return str(project["version"])


def outside_env() -> dict[str, str]:
    """The environment minus whatever could lead Python back to the source tree."""
    hidden = {"PYTHONPATH", "VIRTUAL_ENV", "CREDENTIALS_DIRECTORY", "PYTHONHOME"}
    return {name: value for name, value in os.environ.items() if name not in hidden}


def installed(prefix: Path, cwd: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    """Run the installed `bma-monitor` from `cwd`, outside the source tree."""
    return subprocess.run(
        [prefix / "bin" / "bma-monitor", *args],
        capture_output=True,
        text=True,
        env=outside_env(),
        cwd=cwd,
        timeout=60,
    )


def write_config(directory: Path) -> Path:
    """One mailbox expiring on 9 June 2026, with a contact; no server is ever contacted."""
    path = fleet.write_config(directory, None, "none", [LOCAL], port=1)
    document = yaml.safe_load(path.read_text())
    document["mailboxes"][0] |= {"password_expires": "2026-06-09", "contact": "d@x.be"}
    path.write_text(yaml.safe_dump(document, allow_unicode=True))
    return path


@pytest.mark.slow  # the install builds a wheel and fetches its dependencies
def test_version_is_the_one_in_pyproject(prefix: Path, tmp_path: Path) -> None:
    """The installed command says the version pyproject.toml gives, not a source-tree one."""
    done = installed(prefix, tmp_path, "--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"bma-monitor {version()}"


@pytest.mark.slow  # the install builds a wheel and fetches its dependencies
def test_check_finds_the_templates_inside_the_installed_package(
    prefix: Path, tmp_path: Path
) -> None:
    """`check` passes with no notify.templates, on every template file shipped in the wheel."""
    path = write_config(tmp_path)
    done = installed(prefix, tmp_path, "check", "--config", path)
    assert done.returncode == 0, done.stderr
    assert "valid; 1 mailboxes (1 ec, 0 po) on 1 server(s)" in done.stdout
    lines = [line for line in done.stdout.splitlines() if line.startswith("warning mail ")]
    assert len(lines) == 1
    folder = Path(lines[0].split(": ", 1)[1])
    assert folder.is_relative_to(prefix) and folder.name == "mails"
    comparison = filecmp.dircmp(shipped_folder(), folder)
    assert comparison.left_only == comparison.right_only == []
    assert comparison.diff_files == [] and len(comparison.same_files) == 7


@pytest.mark.slow  # the install builds a wheel and fetches its dependencies
def test_preview_from_the_installed_copy_is_the_source_trees(
    prefix: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`notify preview` renders both mails from the packaged templates, as the source does."""
    path = write_config(tmp_path)
    args = ["notify", "preview", LOCAL, "--config", str(path), "--at", "2026-06-04", "--json"]
    done = installed(prefix, tmp_path, *args)
    assert done.returncode == 0, done.stderr
    assert main(args) == 0
    assert done.stdout == capsys.readouterr().out
    assert done.stdout.count("expire le mardi 9 juin 2026, dans 5 jours.") == 2


@pytest.mark.slow  # the install builds a wheel and fetches its dependencies
def test_a_second_install_over_the_first_is_refused(prefix: Path, tmp_path: Path) -> None:
    """Installing over an existing copy stops before touching it: pip would keep the old one."""
    before = (prefix / "bin" / "bma-monitor").stat().st_mtime_ns
    done = subprocess.run(
        [REPOSITORY / "scripts" / "install", prefix],
        capture_output=True,
        text=True,
        env=outside_env(),
        cwd=tmp_path,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"{prefix} already holds bma-monitor" in done.stderr
    assert (prefix / "bin" / "bma-monitor").stat().st_mtime_ns == before


def dockerfile_instructions() -> dict[str, list[str]]:
    """The Dockerfile's instructions' arguments by keyword, continuation lines joined."""
    text = (REPOSITORY / "Dockerfile").read_text().replace("\\\n", " ")
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            keyword, _, rest = line.strip().partition(" ")
            found.setdefault(keyword, []).append(" ".join(rest.split()))
    return found


def test_dockerfile_mirrors_the_install_and_the_defaults() -> None:
    """The image runs scripts/install to the documented prefix, on the default port and
    state folder, with the version pyproject.toml gives."""
    instructions = dockerfile_instructions()
    port = HttpConfig().port
    assert instructions["RUN"][0] == f"/src/scripts/install {IMAGE_PREFIX}"
    assert f"--from=builder {IMAGE_PREFIX} {IMAGE_PREFIX}" in instructions["COPY"]
    assert instructions["EXPOSE"] == [str(port)]
    assert instructions["VOLUME"] == [f'["{StateConfig().path.parent}"]']
    assert f"http://127.0.0.1:{port}/healthz" in instructions["HEALTHCHECK"][0]
    assert f"{IMAGE_PREFIX}/bin/python" in instructions["HEALTHCHECK"][0]
    label = re.search(r'org\.opencontainers\.image\.version="([^"]+)"', instructions["LABEL"][0])
    assert label is not None and label[1] == version()
    assert instructions["ENTRYPOINT"] == ['["bma-monitor"]']
    stages = [line.split()[0] for line in instructions["FROM"]]
    assert stages == ["python:3.11-slim-bookworm"] * 2  # one interpreter path for the venv
