"""The layout holds: one import root, a core that imports no one, and rooms that only import below.

A lower package or room that imports a higher one fails here with the file, the line and both
names, so the direction of the code cannot drift one convenient import at a time.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIRS = PYPROJECT["tool"]["setuptools"]["package-dir"]

G = "counterguard.gateway"
_GATEWAY_ROOT = (f"{G}.config", f"{G}.questions", G)
# What each package or room may import, besides itself. The longest matching prefix rules.
ALLOWED = {
    "counterguard.core": (),
    "counterguard.hardware": ("counterguard.core",),
    G: ("counterguard.core", "counterguard.hardware", *_GATEWAY_ROOT),
    f"{G}.store": ("counterguard.core", *_GATEWAY_ROOT),
    f"{G}.scoring": ("counterguard.core", *_GATEWAY_ROOT, f"{G}.store"),
    f"{G}.counter": ("counterguard.core", "counterguard.hardware", *_GATEWAY_ROOT, f"{G}.store", f"{G}.scoring"),
    f"{G}.link": ("counterguard.core", *_GATEWAY_ROOT, f"{G}.store", f"{G}.scoring"),
    f"{G}.branch": ("counterguard.core", "counterguard.hardware", *_GATEWAY_ROOT, f"{G}.store", f"{G}.scoring",
                    f"{G}.counter"),
    f"{G}.ops": ("counterguard.core", "counterguard.hardware", G),
    # A model is judged exactly as the gateway scores it.
    "counterguard.models": ("counterguard.core", f"{G}.scoring"),
    "counterguard.centre": ("counterguard.core", "counterguard.models"),
    "counterguard.provisioning": ("counterguard.core", "counterguard.hardware", G),
    # The command line and the demo at the top wire everything together.
    "counterguard": ("counterguard",),
}
OLD_NAMES = ("gateway", "centre", "models", "hardware", "provisioning", "core")


def _rule(module: str) -> str:
    return max((p for p in ALLOWED if module == p or module.startswith(p + ".")), key=len)


def _modules():
    """(module name, file) for every module that installs under counterguard."""
    for package, folder in PACKAGE_DIRS.items():
        base = ROOT / folder
        for path in sorted(base.rglob("*.py")):
            rel = path.relative_to(base).with_suffix("")
            if any(part.startswith(("test", ".")) or part == "__pycache__" for part in rel.parts):
                continue
            if package == "counterguard" and len(rel.parts) > 1:
                continue  # only the top package's own modules; the others are mapped folders
            parts = list(rel.parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join([package, *parts]), path


def _imports(path: Path, module: str):
    """(line, imported module) for every import in a file, relative ones resolved."""
    tree = ast.parse(path.read_text(), str(path))
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield node.lineno, target
            for alias in node.names:  # `from counterguard.gateway import store` imports a room
                yield node.lineno, f"{target}.{alias.name}"


def _is_project_module(name: str) -> bool:
    return any(name == m or name.startswith(m + ".") for m, _ in MODULES)


MODULES = list(_modules())


def test_every_import_points_down_the_layers():
    wrong = []
    for module, path in MODULES:
        allowed = ALLOWED[_rule(module)]
        own = _rule(module)
        for line, target in _imports(path, module):
            if not target.startswith("counterguard") or not _is_project_module(target):
                continue
            if target in ("counterguard", "counterguard.__version__"):
                continue  # the root package holds only the version and imports nothing
            if target == own or target.startswith(own + "."):
                continue
            if not any(target == a or target.startswith(a + ".") for a in allowed):
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {module} imports {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_core_imports_nothing_else_of_the_project():
    for module, path in MODULES:
        if module.startswith("counterguard.core"):
            for line, target in _imports(path, module):
                assert not target.startswith("counterguard") or target.startswith("counterguard.core"), (
                    f"{path.relative_to(ROOT)}:{line} imports {target}")


def test_the_root_package_imports_nothing():
    tree = ast.parse((ROOT / "counterguard" / "__init__.py").read_text())
    assert not [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]


@pytest.mark.parametrize("folder", ["core", "counterguard", "gateway", "centre", "models", "hardware",
                                    "provisioning", "tests", "bench", "fuzz"])
def test_nothing_imports_the_old_top_level_names(folder):
    wrong = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        if any(part.startswith(".") for part in path.relative_to(ROOT).parts):
            continue  # bench/.venv-peers and the like: other projects' code
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else []
            wrong += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n.split(".")[0] in OLD_NAMES]
    assert not wrong, "import these as counterguard.<name>:\n" + "\n".join(wrong)


def test_the_build_lists_every_package_and_nothing_else():
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    found = {m for m, p in MODULES if p.name == "__init__.py"}
    assert listed == found
    assert all(p == "counterguard" or p.startswith("counterguard.") for p in listed)


def test_only_counterguard_is_importable_from_outside_the_repository(tmp_path):
    # Run from elsewhere, so the repository's folders are not on the path: only the installed names are.
    code = ("import importlib.util as u, counterguard.core.wire, counterguard.gateway.ops.app;"
            "print([n for n in ('gateway', 'centre', 'models', 'hardware', 'provisioning', 'core') if u.find_spec(n)])")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_wheel_installs_only_counterguard(tmp_path):
    # `pip install .` installs what the wheel holds: every file under counterguard/, and its metadata.
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                           "--disable-pip-version-check", "-w", str(tmp_path), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    [wheel] = tmp_path.glob("counterguard-*.whl")
    import zipfile

    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"counterguard"}
    # The data the gateway reads at run time travels with it.
    for data in ("counterguard/models/counterguard-v1.tflite", "counterguard/hardware/pinmaps/pi4-4counter.toml",
                 "counterguard/gateway/caring_questions.toml",
                 "counterguard/gateway/branch/console/templates/console.html"):
        assert data in names
