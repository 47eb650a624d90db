"""The job store's queries live in modelforge/store.py (and the model classmethods of db.py): no other module of the
package queries a table, opens a transaction or imports Peewee."""

import ast
from pathlib import Path

import pytest

from modelforge import db

PACKAGE = Path(__file__).resolve().parent.parent / "modelforge"
STORE_MODULES = {"store.py", "db.py"}
MODELS = {model.__name__ for model in db.TABLES} | {"database"}
QUERIES = {"select", "update", "where", "delete", "insert", "insert_many", "create", "get", "get_or_none",
           "get_by_id", "running", "queued", "atomic", "execute_sql", "create_tables"}
ROW_WRITES = {"delete_instance"}  # Peewee's own name: a row deleted, whatever variable holds it


def _root_name(node: ast.AST) -> str | None:
    """`Job` for `Job.select().where(...)`: the name an attribute chain starts from."""
    while isinstance(node, (ast.Attribute, ast.Call, ast.Subscript)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def queries_in(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"line {node.lineno}: imports {name}" for name in modules if name.split(".")[0] in ("peewee", "playhouse")]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            attr = node.func.attr
            if attr in ROW_WRITES:
                found.append(f"line {node.lineno}: .{attr}()")
            elif attr in QUERIES and _root_name(node.func) in MODELS:
                found.append(f"line {node.lineno}: {_root_name(node.func)}….{attr}()")
    return found


def test_the_check_sees_a_query():
    assert queries_in("Job.select().where(Job.id == 1).first()") == ["line 1: Job….where()", "line 1: Job….select()"]
    assert queries_in("with database.atomic():\n    job.delete_instance()") == [
        "line 1: database….atomic()", "line 2: .delete_instance()"]
    assert queries_in("from peewee import IntegrityError") == ["line 1: imports peewee"]
    assert queries_in("store.update(job.id, step=3)\nvalues.update(a=1)\nJob.DoesNotExist") == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_only_the_store_queries_the_tables(path):
    if path.relative_to(PACKAGE).as_posix() in STORE_MODULES:
        return
    assert queries_in(path.read_text(encoding="utf-8")) == []
