"""Assemble sql/, migrations/ and plpython/ into the one install script shipped in the package.

Order in the script: sql/head.sql (schema and migration ledger), every migration wrapped so it
runs once and is checksummed, then the idempotent sql/NNN-*.sql files (re-applied on every
install), then the PL/Python module sources and the installed-version record.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from dbflywheel import __version__
from dbflywheel.errors import FlywheelError

REPO_ROOT = Path(__file__).resolve().parents[2]
SHIPPED_SCRIPT = Path(__file__).resolve().parent / "data" / "flywheel.sql"
# Where `make setup` installs what PL/Python imports for Debian's python3; `dbflywheel install
# --python-path DIR` (or DBFLYWHEEL_PL_PYTHON_DIR, as for make setup) installs with another.
DEFAULT_PL_PYTHON_PATH = "/usr/local/lib/dbflywheel/python3.11"

# A function body that is only this comment is replaced by a call into plpython/<module>.py.
_PLPYTHON_MARKER = re.compile(r"\$python\$\s*#\s*plpython:\s*([A-Za-z_]\w*)\.([A-Za-z_]\w*)\s*\$python\$")


@dataclass(frozen=True)
class Sources:
    head: str
    migrations: list[tuple[str, str]]  # (file name, body)
    idempotent: list[tuple[str, str]]
    modules: dict[str, str]  # plpython module name -> source


def read_sources(root: Path = REPO_ROOT) -> Sources:
    sql_dir, mig_dir, py_dir = root / "sql", root / "migrations", root / "plpython"
    if not sql_dir.is_dir():
        raise FlywheelError(f"no sql/ folder under {root}: build runs from a source checkout")
    migrations = [(p.name, p.read_text()) for p in sorted(mig_dir.glob("[0-9][0-9][0-9][0-9]-*.sql"))]
    idempotent = [(p.name, p.read_text()) for p in sorted(sql_dir.glob("[0-9][0-9][0-9]-*.sql"))]
    modules = {p.stem: p.read_text() for p in sorted(py_dir.glob("*.py"))}
    names = [n for n, _ in migrations]
    numbers = [n[:4] for n in names]
    if len(set(numbers)) != len(numbers):
        raise FlywheelError(f"two migrations share a number: {names}")
    return Sources((sql_dir / "head.sql").read_text(), migrations, idempotent, modules)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _dollar_quote(body: str, tag: str) -> str:
    if f"${tag}$" in body:
        raise FlywheelError(f"the text to quote contains the reserved quote tag ${tag}$")
    return f"${tag}${body}${tag}$"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def modules_key(modules: dict[str, str]) -> str:
    """Identifies one build of the PL/Python modules; a session caches them under this key."""
    digest = _sha("\n".join(f"{n}\n{s}" for n, s in sorted(modules.items())))[:12]
    return f"dbflywheel:{__version__}:{digest}"


def _wrap_migration(name: str, body: str) -> str:
    checksum = _sha(body)
    return f"""
-- migration {name}
DO $migration$
DECLARE
    _applied text;
BEGIN
    SELECT checksum INTO _applied FROM flywheel._migrations WHERE name OPERATOR(pg_catalog.=) {_literal(name)};
    IF _applied IS NULL THEN
        EXECUTE {_dollar_quote(body, "migration_body")};
        INSERT INTO flywheel._migrations (name, checksum, version)
        VALUES ({_literal(name)}, {_literal(checksum)}, {_literal(__version__)});
    ELSIF _applied OPERATOR(pg_catalog.<>) {_literal(checksum)} THEN
        RAISE EXCEPTION 'migration % was changed after it was applied', {_literal(name)}
            USING HINT = 'an applied migration is never edited: restore migrations/'
                || {_literal(name)} || ' and put the change in a new numbered migration';
    END IF;
END
$migration$;
"""


def _function_params(module: str, source: str, function: str) -> list[str]:
    tree = ast.parse(source, filename=f"plpython/{module}.py")
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            params = [a.arg for a in node.args.args]
            if not params or params[0] != "plpy":
                raise FlywheelError(f"plpython/{module}.py: {function} must take plpy first")
            return params[1:]
    raise FlywheelError(f"plpython/{module}.py has no function {function}")


def _expand_plpython(sql: str, modules: dict[str, str], key: str) -> str:
    def body(match: re.Match[str]) -> str:
        module, function = match.group(1), match.group(2)
        if module not in modules:
            raise FlywheelError(f"the SQL names plpython/{module}.py, which does not exist")
        args = ", ".join(["plpy", *_function_params(module, modules[module], function)])
        return (
            "$python$\n"
            f"_import = GD.get({key!r})\n"
            "if _import is None:\n"
            '    plpy.execute("SELECT flywheel._python_boot()")\n'
            f"    _import = GD[{key!r}]\n"
            f"return _import({module!r}).{function}({args})\n"
            "$python$"
        )

    return _PLPYTHON_MARKER.sub(body, sql)


# The line of the boot function that names PL/Python's package folder; `dbflywheel install
# --python-path` rewrites it (a superuser's choice at install time, never a session's setting).
PYTHON_PATH_LINE = "PYTHON_PATH = {path!r}"
# The package the PL/Python modules are imported under, inside the server.
PL_PACKAGE = "dbflywheel_plpython"


# One module per line of the boot function's table: its name, then repr() of its source.
_MODULE_LINE = "    {name!r}: {source!r}"


def shipped_module(name: str, script: str | None = None) -> str | None:
    """A PL/Python module's source as the shipped install script carries it (None when absent),
    so the package runs exactly the code the database runs."""
    prefix = _MODULE_LINE.format(name=name, source="")[: -len(repr(""))]
    found = re.search(rf"^{re.escape(prefix)}('.*'|\".*\"),$", shipped_script() if script is None else script, re.M)
    return ast.literal_eval(found.group(1)) if found else None


def _boot_function(key: str, modules: dict[str, str]) -> str:
    """The loader every PL/Python function calls once per session. The module sources and the
    package folder are part of its body: only a superuser can create or replace a plpython3u
    function, so no table or setting that anyone else can write decides what Python runs."""
    sources = ",\n".join(_MODULE_LINE.format(name=name, source=src) for name, src in sorted(modules.items()))
    body = f"""
import builtins
import importlib
import importlib.abc
import importlib.util
import sys

{PYTHON_PATH_LINE.format(path=DEFAULT_PL_PYTHON_PATH)}
for folder in reversed([p for p in PYTHON_PATH.split(":") if p]):
    if folder not in sys.path:
        sys.path.insert(0, folder)
sources = {{
{sources}
}}
# The modules live in a package of their own: their plain names (environment, ...) are never
# taken from, or given to, any other code that imports in this backend.
PACKAGE = {PL_PACKAGE!r}
for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
    del sys.modules[name]  # a newer install in this session replaces older modules


def _import(name, globals=None, locals=None, fromlist=(), level=0):
    # Our modules import each other by their plain names; those resolve inside the package.
    if level == 0 and name in sources:
        return importlib.import_module(PACKAGE + "." + name)
    return builtins.__import__(name, globals, locals, fromlist, level)


_builtins = dict(vars(builtins), __import__=_import)


class FlywheelModules(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    dbflywheel = True
    python_path = PYTHON_PATH

    def find_spec(self, name, path=None, target=None):
        if name == PACKAGE:
            return importlib.util.spec_from_loader(name, self, is_package=True)
        if name.startswith(PACKAGE + ".") and name[len(PACKAGE) + 1:] in sources:
            short = name[len(PACKAGE) + 1:]
            return importlib.util.spec_from_loader(name, self, origin=f"plpython/{{short}}.py")
        return None

    def create_module(self, spec):
        return None

    def exec_module(self, module):
        if module.__name__ == PACKAGE:
            return
        module.__dict__["__builtins__"] = _builtins
        code = compile(sources[module.__name__[len(PACKAGE) + 1:]], module.__spec__.origin, "exec")
        exec(code, module.__dict__)


sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "dbflywheel", False)]
sys.meta_path.insert(0, FlywheelModules())
GD[{key!r}] = lambda name: importlib.import_module(PACKAGE + "." + name)
"""
    return f"""
CREATE OR REPLACE FUNCTION flywheel._python_boot() RETURNS void
LANGUAGE plpython3u  -- runs as its caller: it reads nothing from the database
SET search_path TO pg_catalog, pg_temp
AS {_dollar_quote(body, "python")};
"""


def build_script(root: Path = REPO_ROOT) -> str:
    src = read_sources(root)
    key = modules_key(src.modules)
    parts = [
        f"-- dbflywheel {__version__}: generated by `dbflywheel build` from sql/, migrations/ and"
        " plpython/.\n-- Do not edit: change the sources and rebuild.\n",
        src.head,
        # Migrations that predate the pinned search path name pgvector's type unqualified.
        "SET LOCAL search_path TO pg_catalog, @extschema:vector@, pg_temp;\n",
        *(_wrap_migration(name, body) for name, body in src.migrations),
        "SET LOCAL search_path TO pg_catalog, pg_temp;\n",
        f"""
CREATE OR REPLACE FUNCTION flywheel.version() RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET search_path TO pg_catalog, pg_temp
AS $$ SELECT {_literal(__version__)} $$;
COMMENT ON FUNCTION flywheel.version() IS 'The version of dbflywheel installed in this database.';
""",
        _boot_function(key, src.modules),
        *(
            f"\n-- {name}\n" + _expand_plpython(body, src.modules, key)
            for name, body in src.idempotent
        ),
    ]
    return "\n".join(p.strip("\n") + "\n" for p in parts)


def script_checksum(script: str) -> str:
    return _sha(script)


def write(root: Path = REPO_ROOT) -> Path:
    SHIPPED_SCRIPT.parent.mkdir(parents=True, exist_ok=True)
    SHIPPED_SCRIPT.write_text(build_script(root))
    return SHIPPED_SCRIPT


def check(root: Path = REPO_ROOT) -> None:
    """Raise when the shipped script differs from what the sources build."""
    fresh = build_script(root)
    shipped = SHIPPED_SCRIPT.read_text() if SHIPPED_SCRIPT.exists() else ""
    if fresh != shipped:
        raise FlywheelError(
            f"the shipped install script {SHIPPED_SCRIPT.name} is stale: run `dbflywheel build` (or `make build`)"
        )


def shipped_script() -> str:
    """The install script inside the installed package."""
    from importlib.resources import files

    return (files("dbflywheel") / "data" / "flywheel.sql").read_text()
