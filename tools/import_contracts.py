"""An import-linter contract type that import-linter lacks: an allowlist.

`forbidden` contracts name what a package may not import, so a new dependency nobody thought
to forbid passes. `allowed_imports` names what it may import: each source module may import
its own package's modules and the listed ones, nothing else. pyproject.toml registers it under
`contract_types`; the pure engine's contract uses it (standard-library modules only).
"""

from __future__ import annotations

import grimp
from importlinter import Contract, ContractCheck, fields, output


def _within(module: str, names: set[str]) -> bool:
    """`module` is one of `names` or inside one of them."""
    return any(module == name or module.startswith(name + ".") for name in names)


class AllowedImportsContract(Contract):
    """The modules in `source_modules` (packages included) directly import nothing but each
    other and `allowed_modules` (a name allows its submodules too)."""

    type_name = "allowed_imports"

    source_modules = fields.ListField(subfield=fields.ModuleField())
    allowed_modules = fields.ListField(subfield=fields.StringField())

    def check(self, graph: grimp.ImportGraph, verbose: bool) -> ContractCheck:
        packages = {module.name for module in self.source_modules}  # type: ignore[attr-defined]
        allowed = set(self.allowed_modules)  # type: ignore[arg-type]
        sources = {name for name in graph.modules if _within(name, packages)}
        illegal = []
        for importer in sorted(sources):
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                if _within(imported, packages) or _within(imported, allowed):
                    continue
                lines = sorted(detail["line_number"] for detail in graph.get_import_details(
                    importer=importer, imported=imported))
                illegal.append({"importer": importer, "imported": imported, "lines": lines})
        return ContractCheck(kept=not illegal, metadata={"illegal": illegal})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for link in check.metadata["illegal"]:
            where = ", ".join(f"l.{line}" for line in link["lines"])
            output.print_error(
                f"{link['importer']} imports {link['imported']} ({where}), which is not in "
                "allowed_modules", bold=False)
        output.new_line()
