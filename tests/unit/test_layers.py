"""The source tree keeps its layers: stages and geo stay free of Dagster and of the layers above
them, Dagster's internals are reached through one module, and no module grows past ~500 lines."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "loom_assets"
STAGES = PACKAGE / "stages"
MAX_LINES = 500
# Modules over the limit (none now; a module that grows past it is split along its seams).
BEING_SPLIT: set[str] = set()


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def _imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, absolute names (relative imports resolved)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


STAGE_MODULES = sorted(
    _module_name(p) for p in STAGES.iterdir()
    if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()
)
PURE_MODULES = [*STAGE_MODULES, "loom_assets.geo", "loom_assets.offsets"]


@pytest.mark.parametrize("module", PURE_MODULES)
def test_importing_a_pure_module_does_not_import_dagster(module):
    code = f"import sys, {module}; print('dagster' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "False", f"{module} imports dagster"


def test_stages_import_nothing_from_the_layers_above():
    above = ("loom_assets.resources", "loom_assets.flows", "loom_assets.sensors")
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(m for m in _imported_modules(path) if m.startswith(above))
        for path in _modules(STAGES)
    }
    assert {path: names for path, names in offenders.items() if names} == {}


def test_only_dagster_compat_imports_dagster_internals():
    offenders = [
        str(path.relative_to(PACKAGE)) for path in _modules(PACKAGE)
        if path.name != "dagster_compat.py"
        and any(m == "dagster._" or m.startswith("dagster._") for m in _imported_modules(path))
    ]
    assert offenders == []


def test_no_module_passes_500_lines():
    too_long = {
        str(path.relative_to(PACKAGE)): count for path in _modules(PACKAGE)
        if (count := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert {path: count for path, count in too_long.items() if path not in BEING_SPLIT} == {}


# Libraries only some stages use: every run, sensor evaluation and `loom` command imports the
# definitions, so these wait until a stage uses them (loom_assets/lazy.py).
HEAVY_LIBRARIES = ["scipy", "cv2", "torch", "trafilatura", "mediapipe", "onnxruntime", "faster_whisper",
                   "ctranslate2", "sentence_transformers", "sklearn", "nemo", "dagster._core.execution.backfill"]


def test_importing_the_definitions_imports_no_heavy_library():
    code = ("import sys, loom_assets.definitions; "
            f"print(','.join(m for m in {HEAVY_LIBRARIES!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.strip() == "", f"importing the definitions imports {result.stdout.strip()}"


def test_a_lazy_module_is_imported_on_first_use():
    code = ("import sys; from loom_assets.lazy import LazyModule; colorsys = LazyModule('colorsys'); "
            "before = 'colorsys' in sys.modules; hls = colorsys.rgb_to_hls(1, 0, 0); "
            "print(before, 'colorsys' in sys.modules, hls)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.split(" ", 2)[:2] == ["False", "True"]
    assert result.stdout.split(" ", 2)[2].strip() == "(0.0, 0.5, 1.0)"
