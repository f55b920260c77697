"""Fetch the official pgJDBC 42.7.x jar into .cache/pgjdbc/ (git-ignored) for
tests/test_wire_jdbc.py. Run by `make system-deps` (so by `make test`).

Maven Central is out of reach here; only the package registries are. The PyPI
wheel spark-migration 0.1.0 ships the PostgreSQL JDBC driver unchanged as
Migration/drivers/postgresql-42.7.12.jar, so we download that wheel with pip
(no install, no dependencies) and take the jar out of it. The jar must have
the SHA-256 that Maven Central publishes for org.postgresql:postgresql:42.7.12
(it is byte-identical to the release), say Implementation-Version 42.7.12 in
its manifest, and hold org/postgresql/Driver.class; otherwise nothing is kept.

usage: python tests/clients/jdbc/fetch_pgjdbc.py   (prints the jar's path)
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

VERSION = "42.7.12"
SHA256 = "31fbf6f06b2217fb51d5100cee51b22625cc81640da0679b47914e54c1e6377c"
WHEEL = "spark-migration==0.1.0"
MEMBER = f"Migration/drivers/postgresql-{VERSION}.jar"

ROOT = Path(__file__).resolve().parents[3]
CACHE = ROOT / ".cache" / "pgjdbc"
JAR = CACHE / f"postgresql-{VERSION}.jar"


def problem(jar: Path) -> str | None:
    """Why `jar` is not the official pgJDBC VERSION jar, or None if it is."""
    digest = hashlib.sha256(jar.read_bytes()).hexdigest()
    if digest != SHA256:
        return f"sha256 {digest}, expected {SHA256}"
    with zipfile.ZipFile(jar) as z:
        manifest = z.read("META-INF/MANIFEST.MF").decode()
        if "org/postgresql/Driver.class" not in z.namelist():
            return "no org/postgresql/Driver.class"
    fields = dict(line.split(": ", 1) for line in manifest.splitlines() if ": " in line)
    if fields.get("Implementation-Version") != VERSION or fields.get("Bundle-SymbolicName") != "org.postgresql.jdbc":
        return f"manifest says {fields.get('Bundle-SymbolicName')} {fields.get('Implementation-Version')}"
    return None


def main() -> int:
    if JAR.exists() and problem(JAR) is None:
        print(JAR)
        return 0
    CACHE.mkdir(parents=True, exist_ok=True)
    print(f"fetching pgJDBC {VERSION} (from the PyPI wheel {WHEEL}) into {CACHE}", file=sys.stderr)
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
                        "--dest", tmp, WHEEL], check=True)
        wheels = list(Path(tmp).glob("*.whl"))
        if len(wheels) != 1:
            print(f"expected one wheel from {WHEEL}, got {wheels}", file=sys.stderr)
            return 1
        part = Path(tmp) / JAR.name
        with zipfile.ZipFile(wheels[0]) as z, z.open(MEMBER) as src, part.open("wb") as dst:
            shutil.copyfileobj(src, dst)
        why = problem(part)
        if why:
            print(f"{MEMBER} in {wheels[0].name} is not the official pgJDBC {VERSION}: {why}", file=sys.stderr)
            return 1
        part.replace(JAR)
    print(JAR)
    return 0


if __name__ == "__main__":
    sys.exit(main())
