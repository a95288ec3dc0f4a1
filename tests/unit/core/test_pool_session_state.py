"""The pool does not reset a connection it gets back (db/pool.py `_no_session_state`): no
statement of ours may leave session state on a pooled connection. Every SQL text in the
components and every migration (triggers run on pooled connections) is read for what would
outlive its transaction; the few places that may use it own their connection (or release what
they take, `session_lock`)."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
PACKAGES = ("core", "api", "sender", "operator", "cli")
MIGRATIONS = ROOT / "core/mail_proxy/db/migrations"

# Keywords in capitals (the tree's SQL style), at the start of a statement: not `SET LOCAL`, not
# an UPDATE's SET clause, not prose. Function names in any case.
_START = r"(?:\A|;)\s*"
_ANY_CASE = re.IGNORECASE
SESSION_STATE = {
    "SET / RESET outside SET LOCAL": re.compile(_START + r"(?:SET|RESET)\s+(?!LOCAL\b)"),
    "set_config(..., false)": re.compile(
        r"set_config\s*\((?:[^()]|\([^()]*\))*,\s*false\s*\)", _ANY_CASE
    ),
    "LISTEN": re.compile(_START + r"LISTEN\s"),
    "session advisory lock": re.compile(r"pg_(?:try_)?advisory_lock(?:_shared)?\s*\(", _ANY_CASE),
    "temporary table kept past its transaction": re.compile(
        r"CREATE\s+(?:LOCAL\s+|GLOBAL\s+)?TEMP(?:ORARY)?\s+TABLE(?![^;]*ON\s+COMMIT\s+DROP)"
    ),
    "cursor WITH HOLD": re.compile(r"DECLARE\s[^;]*\bWITH\s+HOLD\b"),
    "named prepared statement": re.compile(_START + r"PREPARE\s"),
    "DISCARD": re.compile(_START + r"DISCARD\s"),
}
_IN_FUNCTIONS = {"set_config(..., false)", "session advisory lock"}
# Who may: each on a connection of its own, or releasing what it takes.
ALLOWED = {
    ("core/mail_proxy/db/pool.py", "session advisory lock"),  # session_lock
    ("core/mail_proxy/db/migrate.py", "session advisory lock"),  # its own connection, closed
}
LISTENER_OWNERS = {"sender/mail_proxy_sender/delivery/wakeups.py"}  # its own connection


def _python_files() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py"))


def _strings(tree: ast.AST) -> list[str]:
    """String literals (an f-string as its literal parts joined), docstrings left out."""
    docstrings = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
    }
    parts = {
        id(v) for node in ast.walk(tree) if isinstance(node, ast.JoinedStr) for v in node.values
    }
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            found.append(
                "".join(
                    v.value if isinstance(v, ast.Constant) and isinstance(v.value, str) else "x"
                    for v in node.values
                )
            )
        elif (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in docstrings | parts
        ):
            found.append(node.value)
    return found


def _offences(text: str) -> list[str]:
    return [kind for kind, pattern in SESSION_STATE.items() if pattern.search(text)]


def test_the_patterns_see_what_they_are_for() -> None:
    assert _offences("SET statement_timeout = 0") == ["SET / RESET outside SET LOCAL"]
    assert _offences("SELECT 1; SET ROLE tenant") == ["SET / RESET outside SET LOCAL"]
    assert _offences("SELECT set_config('app.tenant', $1, false)") == ["set_config(..., false)"]
    assert _offences("SELECT set_config('a', lower($1), false)") == ["set_config(..., false)"]
    assert _offences("LISTEN mail_proxy_work") == ["LISTEN"]
    assert _offences("SELECT pg_advisory_lock($1)") == ["session advisory lock"]
    assert _offences("CREATE TEMP TABLE t (x int)") == ["temporary table kept past its transaction"]
    assert _offences("DECLARE c CURSOR WITH HOLD FOR SELECT 1") == ["cursor WITH HOLD"]
    assert _offences("DISCARD ALL") == ["DISCARD"]
    for harmless in (
        "UPDATE messages SET state = 'sent'",
        "SET LOCAL statement_timeout = '1s'",
        "SELECT set_config('app.tenant', $1, true)",
        "SELECT pg_try_advisory_xact_lock($1)",
        "CREATE TEMP TABLE t (x int) ON COMMIT DROP",
        "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET x = 1",
        "the sender LISTENs for work",
        "UPDATE accounts\nSET health = 'ok'",
        "Set the given writable fields",
        "listen lost",
    ):
        assert _offences(harmless) == [], harmless


def test_no_statement_leaves_session_state_on_a_pooled_connection() -> None:
    found = []
    for path in _python_files():
        relative = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for text in _strings(tree):
            found += [
                (relative, kind, text.strip()[:80])
                for kind in _offences(text)
                if (relative, kind) not in ALLOWED
            ]
    for path in sorted(MIGRATIONS.glob("*.sql")):
        text = path.read_text(encoding="utf-8")
        # A migration runs on a connection of its own; what its functions and triggers do
        # runs on pooled ones.
        found += [(path.name, kind, "") for kind in _offences(text) if kind in _IN_FUNCTIONS]
    assert found == []


def test_only_the_wakeup_listener_listens() -> None:
    listeners = set()
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in (
                "add_listener",
                "add_log_listener",
            ):
                listeners.add(str(path.relative_to(ROOT)))
    assert listeners <= LISTENER_OWNERS
