"""docs/deploy.md, "8. Installing without internet access", done as written: a wheelhouse of wqbot and
its dependencies at the versions in constraints.txt (`pip wheel`, on a machine with a package
index), then a fresh virtualenv installed from it with every index off (`--no-index`), where
`wqbot --version` and `wqbot init` run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def pip(python: Path | str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(python), "-m", "pip", *args], capture_output=True, text=True, timeout=600, env=env, cwd=ROOT
    )


def test_install_from_a_local_wheelhouse_with_no_index(tmp_path):
    wheelhouse = tmp_path / "wheelhouse"
    built = pip(sys.executable, "wheel", "--quiet", "--wheel-dir", str(wheelhouse), "-c", "constraints.txt", ".")
    if built.returncode != 0 and "No matching distribution" in built.stderr + built.stdout:
        pytest.skip(f"no package index to build the wheelhouse from: {built.stderr[-300:]}")
    assert built.returncode == 0, built.stderr[-2000:]
    names = {p.name.split("-")[0].lower() for p in wheelhouse.glob("*.whl")}
    assert {"wqbot", "uvicorn", "starlette", "httpx", "huey", "peewee", "tqdm"} <= names, names

    # offline: no index, no extra links, no pip configuration of this machine
    offline = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    offline.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    target = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(target)
    python = target / "bin" / "python"
    r = pip(
        python,
        "install",
        "--quiet",
        "--no-index",
        "--find-links",
        str(wheelhouse),
        "-c",
        str(ROOT / "constraints.txt"),
        "wqbot",
        env=offline,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    v = subprocess.run([str(target / "bin" / "wqbot"), "--version"], capture_output=True, text=True, timeout=60)
    assert v.returncode == 0 and v.stdout.startswith("wqbot 0."), v.stdout + v.stderr
    folder = tmp_path / "site"
    folder.mkdir()
    clean = {k: v for k, v in offline.items() if not k.startswith(("WECOM_", "SECRET_", "WEIQIAN_", "DATABASE_"))}
    init = subprocess.run(
        [str(target / "bin" / "wqbot"), "init"], cwd=folder, capture_output=True, text=True, timeout=60, env=clean
    )
    assert init.returncode == 0 and (folder / ".env").exists(), init.stderr
    # the installed tree is a real install, not this checkout on sys.path
    where = subprocess.run(
        [str(python), "-c", "import bot; print(bot.__file__)"], capture_output=True, text=True, cwd=folder, env=clean
    )
    assert str(target) in where.stdout, where.stdout


def test_constraints_pin_every_dependency_ci_installs():
    """`.ci/run` installs wqbot with its test and dev extras under constraints.txt: each of those
    dependencies must be pinned there, or an untested release could arrive by itself."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = [
        *project["dependencies"],
        *project["optional-dependencies"]["test"],
        *project["optional-dependencies"]["dev"],
    ]
    lines = (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines()
    pinned = {line.split("==")[0].lower().replace("_", "-") for line in lines if "==" in line}
    unpinned = [d for d in wanted if re.split(r"[<>=!~\[; ]", d, maxsplit=1)[0].lower().replace("_", "-") not in pinned]
    assert not unpinned, f"add these to constraints.txt at the version CI tested: {unpinned}"
