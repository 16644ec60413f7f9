"""docs/life-of-an-order.md names the module and the function for every stage; each must
exist in the code as it is, so the page cannot rot silently when a module or a function is
renamed, moved or removed.

In the page's code spans (outside fenced blocks; a span may run over a line break):
- `path/to/module.py` must be a file of the repository, and `path/to/folder/` a folder;
- `path/to/module.py: Name, Other.method` must name things that module defines: a
  top-level function, class or assignment, or a class's method, attribute or field
  (assigned in its body or as `self.name` in one of its methods);
- `Class.member` on its own must be a member of some class of that name under scheduler/
  or dashboard/;
- a bare `ClassName` or `CONSTANT` must be defined at the top level of some module there
  (a constant may also be a class attribute, such as a config default).
Read with `ast`, not imported: no module runs.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "life-of-an-order.md"
PACKAGES = ("scheduler", "dashboard")

FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE_SPAN = re.compile(r"`([^`]+)`")
FILE_REF = re.compile(r"^((?:[\w.-]+/)*[\w-]+\.py)(?::\s*(.+))?$")
FOLDER_REF = re.compile(r"^(?:[\w-]+/)+$")
MEMBER_REF = re.compile(r"^([A-Z]\w*)\.([A-Za-z_]\w*)$")
NAME = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)?$")
CLASS_NAME = re.compile(r"^[A-Z][a-z]\w*$")
CONSTANT = re.compile(r"^_?[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+$|^[A-Z]{2,}$")


def _targets(node: ast.AST) -> list[str]:
    """Names an assignment statement binds (plain names only)."""
    if isinstance(node, ast.Assign):
        found = []
        for target in node.targets:
            elements = target.elts if isinstance(target, ast.Tuple) else [target]
            found += [e.id for e in elements if isinstance(e, ast.Name)]
        return found
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _members(cls: ast.ClassDef) -> set[str]:
    """A class's methods, class attributes and fields, and the `self.x` its methods set."""
    names: set[str] = set()
    for node in cls.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        names.update(_targets(node))
    for node in ast.walk(cls):
        if (isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name) and node.value.id == "self"):
            names.add(node.attr)
    return names


@cache
def definitions(path: Path) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """(the module's top-level names, each top-level class's members)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top: set[str] = set()
    classes: dict[str, frozenset[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            top.add(node.name)
            if isinstance(node, ast.ClassDef):
                classes[node.name] = frozenset(_members(node))
        top.update(_targets(node))
    return frozenset(top), classes


@cache
def all_classes(root: Path) -> dict[str, list[frozenset[str]]]:
    """Every top-level class under the packages, by name: the members of each."""
    found: dict[str, list[frozenset[str]]] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            for name, members in definitions(path)[1].items():
                found.setdefault(name, []).append(members)
    return found


@cache
def all_top_level(root: Path) -> frozenset[str]:
    """Every name defined at the top level of a module under the packages."""
    return frozenset(name for package in PACKAGES
                     for path in (root / package).rglob("*.py")
                     for name in definitions(path)[0])


def _defined(path: Path, name: str) -> bool:
    top, classes = definitions(path)
    owner, _, member = name.partition(".")
    if not member:
        return owner in top
    return member in classes.get(owner, frozenset())


def check_references(text: str, root: Path = ROOT) -> tuple[int, list[str]]:
    """(how many references were checked, what is wrong with them)."""
    checked, problems = 0, []
    for span in CODE_SPAN.findall(FENCED.sub("", text)):
        span = " ".join(span.split())
        if (match := FILE_REF.match(span)) is not None:
            relative, names = match.groups()
            path = root / relative
            checked += 1
            if not path.is_file():
                problems.append(f"`{span}`: no file {relative}")
                continue
            for name in (n.strip() for n in (names or "").split(",") if n.strip()):
                checked += 1
                if not NAME.match(name):
                    problems.append(f"`{span}`: {name!r} is not a Name or Class.member")
                elif not _defined(path, name):
                    problems.append(f"`{span}`: {relative} defines no {name}")
        elif FOLDER_REF.match(span):
            checked += 1
            if not (root / span).is_dir():
                problems.append(f"`{span}`: no folder {span}")
        elif (match := MEMBER_REF.match(span)) is not None:
            owner, member = match.groups()
            checked += 1
            classes = all_classes(root).get(owner)
            if classes is None:
                problems.append(f"`{span}`: no class {owner} under {', '.join(PACKAGES)}")
            elif not any(member in members for members in classes):
                problems.append(f"`{span}`: class {owner} has no {member}")
        elif CLASS_NAME.match(span) or CONSTANT.match(span):
            checked += 1
            attribute = CONSTANT.match(span) and any(
                span in members for found in all_classes(root).values() for members in found)
            if span not in all_top_level(root) and not attribute:
                problems.append(f"`{span}`: nothing under {', '.join(PACKAGES)} defines it")
    return checked, problems


def test_every_module_and_name_the_page_cites_exists_in_the_code():
    checked, problems = check_references(PAGE.read_text(encoding="utf-8"))
    assert not problems, "docs/life-of-an-order.md cites what the code lacks:\n" + "\n".join(
        problems)
    # The page names a module and a function for every stage: a parser that matched nothing
    # would pass the line above while checking nothing.
    assert checked >= 150, f"only {checked} references found in the page"


def test_the_check_finds_a_missing_file_function_method_and_member():
    text = ("`scheduler/journal/writer.py: GroupWriter.write_once, GroupWriter.loop` "
            "`scheduler/engine/nowhere.py` `scheduler/engine/core.py: submit_order` "
            "`Cluster.submit_idempotent` `Cluster.submit_twice` `Clusterr.submit` "
            "`dashboard/stream/` `dashboard/streams/` "
            "`scheduler/runtime/cluster.py:\n   Cluster._unconfirmed` `Effects` `Efects` "
            "`PLACEMENT_MOVES` `STREAM_INTERVAL` `PLACEMENT_MOVE`\n"
            "```text\n`scheduler/engine/in_a_block.py`\n```\n")
    checked, problems = check_references(text)
    assert checked == 18
    assert problems == [
        "`scheduler/journal/writer.py: GroupWriter.write_once, GroupWriter.loop`: "
        "scheduler/journal/writer.py defines no GroupWriter.loop",
        "`scheduler/engine/nowhere.py`: no file scheduler/engine/nowhere.py",
        "`scheduler/engine/core.py: submit_order`: scheduler/engine/core.py defines no "
        "submit_order",
        "`Cluster.submit_twice`: class Cluster has no submit_twice",
        "`Clusterr.submit`: no class Clusterr under scheduler, dashboard",
        "`dashboard/streams/`: no folder dashboard/streams/",
        "`Efects`: nothing under scheduler, dashboard defines it",
        "`PLACEMENT_MOVE`: nothing under scheduler, dashboard defines it",
    ]


def test_the_readme_links_the_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "docs/life-of-an-order.md" in readme
