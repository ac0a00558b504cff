"""The project's own files stay consistent: dependencies, Makefile targets, README commands."""

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _normalise(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement).lower()


def test_environment_yml_has_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {
        _normalise(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]
    }
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    listed = {_normalise(d) for d in environment["dependencies"] if isinstance(d, str)}
    assert listed - {"pip", "python>=3.11"} == wanted
    assert f"python{project['requires-python']}" in listed


def test_every_make_target_is_documented_in_make_help():
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z]+):", makefile, flags=re.M))
    shown = subprocess.run(
        ["make", "--no-print-directory", "help"],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert {line.split()[1] for line in shown.splitlines()} == targets
    assert {"report", "test", "setup"} <= targets


def test_readme_quick_start_is_the_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert "make report" in readme and "make test" in readme


def test_importing_the_package_has_no_side_effects():
    code = (
        "import contextlib, io, sys\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):\n"
        "    import agegender, agegender.cli, agegender.data.dataset, agegender.bench\n"
        "assert out.getvalue() == '', out.getvalue()\n"
        "assert 'keras' not in sys.modules and 'tensorflow' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
