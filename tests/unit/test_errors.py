"""Our typed errors in the reader's language (``CasError.with_id``, README "Errors").

A ratchet, read from the source (no import, no run): every ``raise X(...)`` of a
:class:`~cas.errors.CasError` subclass in ``cas/`` and ``firmware_stub/`` — and every one a
helper makes and returns — names its message in the catalogue
(``raise X(...).with_id("id", ...)``), except the sites listed in
``untranslated_errors.txt`` next to this file.  The list may only shrink: a new site without
an id fails, and so does a listed site that got its id but is still listed.  Sites are
counted per function (``path::function::Error count``), so lines moving do not matter.
A class that only shares an error's name (SimulCrypt's ``stream_error`` message
``StreamError``) is told apart by the import it comes through.

And every id the code names is in both catalogues, with the placeholders the raise gives.
"""

from __future__ import annotations

import ast
import string
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from cas.i18n.catalog import catalogue

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("cas", "firmware_stub")
ALLOW_LIST = Path(__file__).with_name("untranslated_errors.txt")

Site = tuple[str, str, str]  # (path, function, error class)


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def error_classes(trees: dict[str, ast.Module]) -> set[str]:
    """The names of ``CasError`` and every class that derives from it, by its bases' names."""
    bases: dict[str, set[str]] = {}
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases.setdefault(node.name, set()).update(
                    n for b in node.bases if (n := _name(b)) is not None)
    ours = {"CasError"}
    grown = True
    while grown:
        grown = False
        for name, parents in bases.items():
            if name not in ours and parents & ours:
                ours.add(name)
                grown = True
    return ours


def self_named(trees: dict[str, ast.Module]) -> set[str]:
    """Error classes whose ``__init__`` names their message (``self.with_id(...)``): making
    one is naming it."""
    out: set[str] = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__" and any(
                            isinstance(c, ast.Call) and isinstance(c.func, ast.Attribute)
                            and c.func.attr == "with_id" and isinstance(c.func.value, ast.Name)
                            and c.func.value.id == "self" for c in ast.walk(item)):
                        out.add(node.name)
    return out


def _calls(tree: ast.Module) -> Iterator[tuple[str, ast.Call, ast.AST | None]]:
    """Every call with the qualified name of the function it is in and its parent node."""

    def walk(node: ast.AST, scope: str) -> Iterator[tuple[str, ast.Call, ast.AST | None]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                yield from walk(child, f"{scope}.{child.name}" if scope else child.name)
                continue
            if isinstance(child, ast.Call):
                yield scope or "<module>", child, node
            yield from walk(child, scope)

    yield from walk(tree, "")


def _with_id(call: ast.Call) -> ast.Call | None:
    """The ``.with_id(...)`` call of ``raise X(...).with_id(...)`` (or ``.with_message_of(exc)``,
    a wrapper saying the wrapped error's message), if that is the shape."""
    if isinstance(call.func, ast.Attribute) and call.func.attr in ("with_id", "with_message_of"):
        return call
    return None


def _module_file(module: str, trees: dict[str, ast.Module]) -> str | None:
    """The file of a dotted module name among ``trees`` (``a/b.py`` or ``a/b/__init__.py``)."""
    base = module.replace(".", "/")
    return next((f for f in (f"{base}.py", f"{base}/__init__.py") if f in trees), None)


def _bindings(path: str, tree: ast.Module, trees: dict[str, ast.Module]
              ) -> dict[str, tuple[str, str | None]]:
    """The names a file's top-level ``from … import`` statements bind: name -> (the file
    imported from, the class name there; ``None`` when the name is a module itself)."""
    package = path.rsplit("/", 1)[0].replace("/", ".")
    out: dict[str, tuple[str, str | None]] = {}
    for node in tree.body:
        if not isinstance(node, ast.ImportFrom):
            continue
        base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        module = (f"{base}.{node.module}" if node.module else base) if node.level else (
            node.module or "")
        source = _module_file(module, trees)
        for alias in node.names:
            local = alias.asname or alias.name
            if (sub := _module_file(f"{module}.{alias.name}", trees)) is not None:
                out[local] = (sub, None)
            elif source is not None:
                out[local] = (source, alias.name)
    return out


def _defined_as_ours(source: ast.Module, name: str, ours: set[str]) -> bool | None:
    """Whether the class ``name`` defined at the top of ``source`` derives from our errors;
    ``None`` when the file does not define it (a re-export: judged by name)."""
    for node in source.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return bool({n for b in node.bases if (n := _name(b)) is not None} & ours)
    return None


def _is_ours(func: ast.expr, ours: set[str], imported: dict[str, tuple[str, str | None]],
             trees: dict[str, ast.Module]) -> bool:
    """A call of a class named like one of our errors is ours unless the import it comes
    through names another class of that name (SimulCrypt's ``stream_error`` message is
    ``StreamError`` too)."""
    target: tuple[str, str] | None = None
    if isinstance(func, ast.Name) and (bound := imported.get(func.id)) and bound[1] is not None:
        target = (bound[0], bound[1])
    elif isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and (
            bound := imported.get(func.value.id)) and bound[1] is None:
        target = (bound[0], func.attr)
    if target is None:
        return True
    verdict = _defined_as_ours(trees[target[0]], target[1], ours)
    return True if verdict is None else verdict


def scan(trees: dict[str, ast.Module]) -> tuple[Counter[Site], list[tuple[str, ast.Call]]]:
    """Our errors made without a message id, counted per function — raised on the spot or
    made by a helper that returns them (``return ConfigError(...)``) — and the ``with_id``
    calls, by file."""
    all_ours = error_classes(trees)
    ours = all_ours - self_named(trees)
    missing: Counter[Site] = Counter()
    named: list[tuple[str, ast.Call]] = []
    for path, tree in trees.items():
        imported = _bindings(path, tree, trees)
        for scope, call, parent in _calls(tree):
            if (said := _with_id(call)) is not None:
                named.append((path, said))
            elif (name := _name(call.func)) in ours and not (
                    isinstance(parent, ast.Attribute) and parent.attr in ("with_id",
                                                                         "with_message_of")
            ) and _is_ours(call.func, all_ours, imported, trees):
                missing[(path, scope, name or "")] += 1
    return missing, named


def _sources() -> dict[str, ast.Module]:
    return {str(p.relative_to(ROOT)): ast.parse(p.read_text("utf-8"), str(p))
            for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def read_allow_list(text: str) -> Counter[Site]:
    """``path::function::Error count  # why`` per line; blank lines and comments skipped."""
    out: Counter[Site] = Counter()
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        site, count = line.rsplit(None, 1)
        path, scope, name = site.split("::")
        out[(path, scope, name)] = int(count)
    return out


def format_allow_list(sites: Counter[Site]) -> str:
    return "".join(f"{p}::{s}::{n} {c}\n" for (p, s, n), c in sorted(sites.items()))


def test_every_error_names_its_message_or_is_listed() -> None:
    missing, _named = scan(_sources())
    allowed = read_allow_list(ALLOW_LIST.read_text("utf-8"))
    new = {f"{'::'.join(k)}: {c} without .with_id (listed: {allowed.get(k, 0)})"
           for k, c in missing.items() if c > allowed.get(k, 0)}
    fixed = {f"{'::'.join(k)}: listed {c}, now {missing.get(k, 0)}: shorten the list"
             for k, c in allowed.items() if missing.get(k, 0) < c}
    assert not new, ("errors a user can meet need a catalogue message "
                     "(raise X(...).with_id('id', ...)):\n" + "\n".join(sorted(new)))
    assert not fixed, f"{ALLOW_LIST.name} lists translated sites:\n" + "\n".join(sorted(fixed))


def test_the_ratchet_sees_a_new_site_and_a_fixed_one() -> None:
    code = '''
from cas.errors import CasError
class UsageError(CasError): ...
class Mine(UsageError): ...
def f(x):
    if x:
        raise Mine(f"bad {x}")
    raise UsageError("named").with_id("named")
def g():
    raise ValueError("not ours")
class T:
    def fail(self, key):
        return Mine(f"{key}: bad")
    def ok(self, key):
        return Mine(f"{key}: bad").with_id("t.bad", key=key)
'''
    missing, named = scan({"m.py": ast.parse(code)})
    assert missing == Counter({("m.py", "f", "Mine"): 1, ("m.py", "T.fail", "Mine"): 1})
    assert [c.args[0].value for _p, c in named if isinstance(c.args[0], ast.Constant)] == [
        "named", "t.bad"]
    assert read_allow_list(format_allow_list(missing) + "# a comment\n") == missing


def test_the_ratchet_tells_a_message_named_like_an_error_apart_by_its_import() -> None:
    """SimulCrypt's ``stream_error`` message is called ``StreamError`` too: made through its
    own module's import it is no error of ours; our ``StreamError`` still counts."""
    trees = {
        "cas/errors.py": ast.parse("class CasError(Exception): ...\n"
                                   "class StreamError(CasError): ...\n"),
        "cas/proto/msgs.py": ast.parse("class _Event: ...\nclass StreamError(_Event): ...\n"),
        "cas/proto/__init__.py": ast.parse(""),
        "cas/a.py": ast.parse("from cas.proto.msgs import StreamError\n"
                              "def answer():\n    return StreamError()\n"),
        "cas/proto/b.py": ast.parse("from . import msgs\nfrom .msgs import StreamError as SE\n"
                                    "def answer():\n    return msgs.StreamError(), SE()\n"),
        "cas/c.py": ast.parse("from cas.errors import StreamError\n"
                              "def check():\n    raise StreamError('late')\n"),
    }
    missing, _named = scan(trees)
    assert missing == Counter({("cas/c.py", "check", "StreamError"): 1})


def _fields(entry: str | dict[str, str]) -> set[str]:
    texts = [entry] if isinstance(entry, str) else list(entry.values())
    return {f for t in texts for _, f, _, _ in string.Formatter().parse(t) if f}


def test_every_named_message_is_in_the_catalogues_with_its_placeholders() -> None:
    _missing, named = scan(_sources())
    en, ru = catalogue("en"), catalogue("ru")
    problems: list[str] = []
    for path, call in named:
        said_by_id = isinstance(call.func, ast.Attribute) and call.func.attr == "with_id"
        if not said_by_id or not call.args or not isinstance(call.args[0], ast.Constant):
            continue  # an id chosen at run time: the completeness test covers the catalogue
        key = f"errors.{call.args[0].value}"
        where = f"{path}:{call.lineno} {key}"
        if key not in en or key not in ru:
            problems.append(f"{where}: not in both catalogues")
            continue
        given = {k.arg for k in call.keywords if k.arg is not None}
        spread = any(k.arg is None for k in call.keywords)  # **params
        lacking = _fields(en[key]) - given
        if lacking and not spread:
            problems.append(f"{where}: the raise does not give {sorted(lacking)}")
    assert not problems, "\n".join(problems)


def test_a_wrapping_error_says_the_wrapped_ones_message() -> None:
    """``with_message_of``: a wrapper carrying the wrapped error's line says it in Russian too;
    ``formats.within``: a field path in front of a wrapped error's own line."""
    from cas.errors import FormatError, ProtocolError
    from cas.i18n import Translator

    ru = Translator("ru")
    inner = FormatError("ecm: empty section").with_id("formats.ecm_empty_section")
    wrapped = ProtocolError(str(inner)).with_message_of(inner)
    assert wrapped.message_id is not None
    assert ru.error(wrapped.message_id, wrapped.message_params) == "ecm: пустая секция"
    assert ProtocolError("peer text").with_message_of(ValueError("x")).message_id is None
    outer = FormatError(str(inner), path="pmt.section_length").with_id(
        "formats.within", field="pmt.section_length", inner=inner)
    assert str(outer) == "pmt.section_length: ecm: empty section"
    assert outer.message_id is not None
    assert ru.error(outer.message_id, outer.message_params) == (
        "pmt.section_length: ecm: пустая секция")


def test_constructs_failures_we_have_words_for_are_said_in_russian() -> None:
    """A truncated record and a wrong magic from construct, through ``wrap_error``."""
    import construct as cs

    from cas.formats._common import wrap_error
    from cas.i18n import Translator

    ru = Translator("ru")
    for schema, data, russian in (
            (cs.Struct("serial" / cs.Int32ub), b"ab",
             "rec.serial: не удаётся разобрать: данные кончаются раньше: ожидалось байт: 4, есть 2"),
            (cs.Struct("magic" / cs.Const(b"AB")), b"XY",
             "rec.magic: не удаётся разобрать: ожидалось b'AB', прочитано b'XY'")):
        try:
            schema.parse(data)
        except cs.ConstructError as exc:
            error = wrap_error(exc, "rec")
        assert error.message_id is not None
        assert ru.error(error.message_id, error.message_params) == russian


def test_a_fast_parsers_details_are_said_in_russian() -> None:
    from cas.formats._common import field_error
    from cas.i18n import Translator

    ru = Translator("ru")
    for detail, russian in (("object failed validation", "значение не прошло проверку"),
                            ("expected b'CREC'", "ожидалось b'CREC'"),
                            ("unsupported version 9", "неподдерживаемая версия 9")):
        error = field_error(detail, "card_record.body.magic")
        assert str(error) == f"card_record.body.magic: {detail}"
        assert error.message_id is not None
        assert ru.error(error.message_id, error.message_params) == (
            f"card_record.body.magic: {russian}")
    assert field_error("something else", "x").message_id is None  # marked untranslated
