"""Packaging: pyproject is the single source of dependencies and environment.yml mirrors it."""
import re
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pyproject = {_name(r): r.replace(" ", "") for r in project["dependencies"]}
    lines = (ROOT / "environment.yml").read_text().splitlines()
    pip_start = lines.index("  - pip:")
    conda = {_name(line.strip()[2:]): line.strip()[2:].replace(" ", "")
             for line in lines[pip_start + 1:] if line.strip().startswith("- ") and not line.strip().startswith("- -e")}
    assert conda == pyproject


def test_required_packages_are_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_name(r) for r in project["dependencies"]}
    required = {"torch", "transformers", "datasets", "peft", "accelerate", "safetensors", "matplotlib",
                "scikit-learn", "jupyterlab", "ipywidgets", "tqdm"}
    assert required <= names
    dev = {_name(r) for r in project["optional-dependencies"]["dev"]}
    assert {"pytest", "papermill", "nbstripout"} <= dev


def test_layout_from_the_design_card():
    for folder in ["ranklab", "notebooks", "figures", "tests", "benchmarks"]:
        assert (ROOT / folder).is_dir(), folder
    for file in ["environment.yml", "pyproject.toml", "Makefile", "README.md", ".ci/run"]:
        assert (ROOT / file).is_file(), file


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme
    ci = (ROOT / ".ci/run").read_text()
    assert "make test" in ci and "torch==2.13.0" in ci


def test_cli_demo_runs_and_prints_a_spectrum():
    result = subprocess.run([sys.executable, "-m", "ranklab.cli", "demo", "--steps", "200"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "sigma_1" in result.stdout and "ranklab lora: 1,024 adapter params" in result.stdout
    planted, learned = re.search(r"sigma_1\s+planted\s+([\d.]+)\s+learned\s+([\d.]+)", result.stdout).groups()
    assert abs(float(planted) - float(learned)) < 0.05 * float(planted)  # the adapter found the planted update


def test_cli_unknown_method_is_a_clean_error():
    result = subprocess.run([sys.executable, "-m", "ranklab.cli", "demo", "--method", "nope"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    # the demo's choices come from the registry (methods whose update on one layer is a fixed matrix)
    assert "invalid choice: 'nope' (choose from" in result.stderr and "'emd'" in result.stderr
    assert "Traceback" not in result.stderr


def _pins() -> dict[str, str]:
    """constraints.txt: canonical name -> pinned version."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and version and not set(version) & set("<>=!~*, "), f"not an exact pin: {line!r}"
            pins[_name(name)] = version
    return pins


def test_the_lock_pins_every_dependency_of_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_name(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    pins = _pins()
    assert declared - set(pins) == set()
    assert "+" not in pins["torch"]  # no local build label: the CPU and the CUDA build both satisfy it
    assert "ranklab" not in pins  # the project itself is installed from the work tree


def test_setup_installs_from_the_lock_by_default():
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^CONSTRAINTS \?= constraints\.txt$", makefile, re.M)
    install_lines = [line for line in makefile.splitlines() if "pip install" in line and "$(BIN)" in line]
    assert install_lines and all("$(PIP_PINS)" in line for line in install_lines)
    readme = (ROOT / "README.md").read_text()
    assert "constraints.txt" in readme and "make lock" in readme


def test_the_pins_satisfy_pyproject_ranges():
    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _pins()
    for line in project["dependencies"] + project["optional-dependencies"]["dev"]:
        requirement = Requirement(line)
        assert requirement.specifier.contains(pins[_name(requirement.name)], prereleases=True), line


def test_readme_methods_table_lists_every_registered_method():
    import ranklab
    from tests import toy_method

    table = (ROOT / "README.md").read_text().split("Methods under one API:", 1)[1].split("\n\n", 2)[1]
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M))
    assert listed == (set(ranklab.available_methods()) - {toy_method.ToyConfig.method}) | {"adalora"}
