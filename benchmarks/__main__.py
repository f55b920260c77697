"""`python -m benchmarks NAME [ARGS...]`: import benchmarks.NAME and call its main()."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _available() -> list[str]:
    here = Path(__file__).resolve().parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)])
                  if not m.name.startswith("_") and _has_main(here / f"{m.name}.py"))


def _has_main(path: Path) -> bool:
    return not path.is_file() or "def main(" in path.read_text(errors="replace")


def main() -> int:
    names = _available()
    if len(sys.argv) < 2 or sys.argv[1] not in names:
        given = repr(sys.argv[1]) if len(sys.argv) > 1 else "no name"
        print(f"usage: python -m benchmarks NAME [ARGS...] ({given} given)\navailable: {', '.join(names) or '(none)'}",
              file=sys.stderr)
        return 2
    name = sys.argv[1]
    sys.argv = [f"benchmarks.{name}", *sys.argv[2:]]
    result = importlib.import_module(f"benchmarks.{name}").main()
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
