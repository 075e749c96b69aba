"""The code's shape: the package never imports a stage, no module imports itself back through others at load
time, and the `svwhisper` command reaches every tool."""

import ast
import subprocess
import sys

import pytest

from conftest import REPO
from svwhisper import cli


def local_imports(path, top_level_only: bool) -> set[str]:
    """Modules of this repo (svwhisper.*, stages.*) that the file at `path` imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
    return {n for n in names if (REPO / f"{n.replace('.', '/')}.py").is_file()}


def test_the_package_never_imports_a_stage():
    for path in sorted((REPO / "svwhisper").glob("*.py")):
        stages = {n for n in local_imports(path, top_level_only=False) if n.startswith("stages")}
        assert not stages, f"{path.name} imports {sorted(stages)}"


def test_no_import_cycles_at_load_time():
    graph = {}
    for path in [*sorted((REPO / "svwhisper").glob("*.py")), *sorted((REPO / "stages").glob("*.py"))]:
        module = path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
        graph[module] = local_imports(path, top_level_only=True)
    state: dict[str, int] = {}

    def visit(module: str, trail: list[str]) -> None:
        state[module] = 1
        for target in sorted(graph.get(module, ())):
            if state.get(target) == 1:
                pytest.fail(f"import cycle: {' -> '.join([*trail, module, target])}")
            if target not in state:
                visit(target, [*trail, module])
        state[module] = 2

    for module in graph:
        if module not in state:
            visit(module, [])


def test_the_svwhisper_command_lists_and_runs_each_tool(capsys):
    with pytest.raises(SystemExit) as ended:
        cli.main(["--help"])
    assert ended.value.code == 0
    listed = capsys.readouterr().out
    assert all(f"  {name} " in listed for name in cli.COMMANDS)
    with pytest.raises(SystemExit, match="no command 'train'"):
        cli.main(["train"])
    done = subprocess.run(
        [sys.executable, "-m", "svwhisper.cli", "transcribe", "--help"], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0 and "usage: svwhisper transcribe" in done.stdout and "--words-per-cue" in done.stdout


def test_no_function_of_the_package_or_a_stage_is_over_60_lines():
    long = []
    for path in [*sorted((REPO / "svwhisper").glob("*.py")), *sorted((REPO / "stages").glob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno >= 60:
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1})")
    assert not long, long


def test_no_module_shadows_the_standard_library():
    shadows = {p.stem for p in (REPO / "svwhisper").glob("*.py")} & set(sys.stdlib_module_names)
    assert not shadows, f"svwhisper modules named like standard-library ones: {sorted(shadows)}"
