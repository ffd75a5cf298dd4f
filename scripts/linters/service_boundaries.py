"""A service never imports another service's package, and a lib never imports a service: services talk over
HTTP and events (docs/conventions.md). Only the whole-desk tests (``tests/``, ``testing/``) see them all."""

from __future__ import annotations

from pathlib import Path

from _lintkit import Violation, imports, main, parse, python_files, service_packages, top

RULE = "service-boundaries"


def check(root: Path) -> list[Violation]:
    services = service_packages(root)
    found: list[Violation] = []
    for path in python_files(root, "services/*", "libs/*"):
        part = path.relative_to(root).parts
        own = part[1] if part[0] == "services" else None
        for imported in imports(path, parse(path)):
            for module in imported.modules:
                owner = services.get(top(module))
                if owner is not None and owner != own:
                    who = f"{own}" if own else f"the lib {part[1]}"
                    found.append(
                        Violation(
                            path, imported.line, f"{RULE}: {who} imports {top(module)} ({owner}'s package)"
                        )
                    )
                    break
    return found


if __name__ == "__main__":
    main(check)
