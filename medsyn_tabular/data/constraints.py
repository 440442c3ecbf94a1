"""Clinical constraints: declared rules that every synthetic row satisfies, whatever the model.

Declared in the schema file's ``constraints:`` section (or on the Tabular page, one rule per line)::

    constraints:
      - admission <= discharge                  # inequality between two columns (<, <=, >, >=)
      - diastolic < systolic
      - pregnancies = 0 if sex = M              # a value or range that holds when a condition does
      - hba1c in [4, 15] if diabetes = yes      #   (in [lo, hi]; in {a, b} for categories; "and" joins)
      - pregnant = yes only if sex = F          # the same as: sex = F if pregnant = yes
      - columns: [sex, pregnant]                # fixed combinations: only these tuples may appear
        allowed: [[F, yes], [F, no], [M, no]]
      - derive bmi = weight / (height / 100) ** 2        # derived columns, computed from others
      - derive age = years_between(birth_date, visit_date)

How each kind is enforced (:class:`ConstraintSet`):

* **derived columns: by construction.** The derived column is not modelled; it is computed from the
  generated inputs (:meth:`ConstraintSet.derive`), so it always agrees with them. Formulas are numbers,
  column names, ``+ - * / // % **``, parentheses and the functions of :data:`FUNCTIONS`; they are parsed
  with :mod:`ast` and evaluated node by node on whole columns (never ``eval``).
* **inequalities, conditional ranges and combinations: by rejection.** Generated rows that break a rule
  are dropped and more are generated (the synthesizer's loop for conditions), so the rows kept follow
  the model's distribution given the rules. A difference transform (model ``discharge - admission``)
  would also guarantee an inequality, but loses every row where the lower column is missing and the
  upper one is not, and breaks conditions and bounds on the upper column; rejection keeps them.
* A rule that can never hold (a range outside the column's bounds, an unknown category, a derived column
  of the wrong kind) is refused before training with :class:`ConstraintError`; one that the model
  almost never meets is refused while sampling, naming the rule and the share of rows that met it.

A rule on a missing cell is not checkable and counts as kept (e.g. a discharge date still missing);
a condition (``if ...``) on a missing cell does not hold, so the rule does not apply.

Messages name rules by number and their columns, never a value (they may be stored in job errors).
"""

from __future__ import annotations

import ast
import operator
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Order operators and their negations (for "a > b" written as "b < a").
_ORDER = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_EQ = {"==": operator.eq, "!=": operator.ne}
_CLAUSE = re.compile(r"^\s*(?P<col>.+?)\s*(?P<op>==|!=|>=|<=|=|>|<|\bin\b)\s*(?P<val>.+?)\s*$", re.S)
_DERIVE = re.compile(r"^\s*(?:derive\s+(?P<a>.+?)\s*=|(?P<b>.+?)\s*:=)\s*(?P<expr>.+?)\s*$", re.S | re.I)
MAX_RULE_CHARS, MAX_FORMULA_NODES = 500, 200
NUMERIC_KINDS = ("continuous", "integer", "datetime")
SECONDS_PER_DAY = 86400.0


class ConstraintError(ValueError):
    """A declared rule is malformed, can never hold, or is too rarely met by the model."""

    #: Messages name rules and columns, never a cell value (see medsyn_core.redaction).
    value_free_message = True


def _strip(v: str) -> str:
    return v.strip().strip("'\"")


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets/parentheses/braces."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [p.strip() for p in out if p.strip()]


# -- clauses -------------------------------------------------------------------------------------------
@dataclass
class Clause:
    """``column op value``: op in < <= > >= == != (one value) or ``in`` (a set, or a [lo, hi] range)."""

    column: str
    op: str
    values: list[Any]  # one value, a set of values (op "in"), or [lo, hi] (op "between")

    def typed(self, kind: str, rule: int, categories: list[Any] | None) -> Clause:
        """The clause with its values read for a column of ``kind`` (numbers, dates or categories)."""
        numeric = kind in NUMERIC_KINDS
        if not numeric and self.op in ("between",) + tuple(_ORDER):
            raise ConstraintError(f"Rule {rule}: column {self.column!r} is {kind}: use =, != or in {{…}} "
                                  "on it, not a range.")
        if numeric and self.op == "in":
            raise ConstraintError(f"Rule {rule}: column {self.column!r} is {kind}: write a range as "
                                  "in [low, high].")
        out = []
        for v in self.values:
            if numeric:
                try:
                    out.append(pd.Timestamp(v) if kind == "datetime" else float(v))
                except (TypeError, ValueError):
                    wanted = "date" if kind == "datetime" else "number"
                    raise ConstraintError(f"Rule {rule}: column {self.column!r} needs a {wanted}.") from None
            else:
                out.append(_category(v, categories, rule, self.column))
        if self.op == "between" and out[0] > out[1]:
            raise ConstraintError(f"Rule {rule}: the range on {self.column!r} has its low end above its "
                                  "high end.")
        return Clause(self.column, self.op, out)

    def mask(self, s: pd.Series) -> np.ndarray:
        """(n,) True where the cell satisfies the clause; False where it does not or is missing."""
        present = s.notna().to_numpy()
        if self.op in _ORDER or self.op == "between" or (
                self.values and isinstance(self.values[0], (float, pd.Timestamp))):
            x = s if pd.api.types.is_datetime64_any_dtype(s) else pd.to_numeric(s, errors="coerce")
            if self.op == "between":
                res = (x >= self.values[0]) & (x <= self.values[1])
            elif self.op == "in":
                res = x.isin(self.values)
            else:
                res = (_ORDER | _EQ)[self.op](x, self.values[0])
            return np.asarray(pd.Series(res).fillna(False), dtype=bool) & present
        keys = s.astype(object).map(_key)
        wanted = {_key(v) for v in self.values}
        res = keys.isin(wanted).to_numpy()
        return (~res if self.op == "!=" else res) & present


def _key(v: Any) -> str | None:
    """Comparable text of a category: 3, 3.0 and "3" are the same code."""
    if v is None or (not isinstance(v, str) and pd.isna(v)):
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if f.is_integer() else str(f)


def _category(value: Any, categories: list[Any] | None, rule: int, column: str) -> Any:
    if categories is None:
        return value
    match = [c for c in categories if _key(c) == _key(value)]
    if not match:
        raise ConstraintError(f"Rule {rule}: column {column!r} has no such category (the model knows "
                              f"{len(categories)}; check the spelling against the data dictionary).")
    return match[0]


def _parse_clause(text: str, rule: int) -> Clause:
    m = _CLAUSE.match(text)
    if not m:
        raise ConstraintError(f"Rule {rule}: cannot read a part of it; write e.g. 'a <= b', 'x = 0 if sex = "
                              "M', 'x in [1, 5]' or 'derive bmi = weight / height ** 2'.")
    col, op, val = m.group("col").strip(), m.group("op"), m.group("val").strip()
    op = "==" if op == "=" else op
    if val[:1] in "<>=!":
        raise ConstraintError(f"Rule {rule}: cannot read its operator; use <, <=, >, >=, =, != or in.")
    if op == "in":
        if val.startswith("[") and val.endswith("]"):
            parts = _split_top(val[1:-1])
            if len(parts) != 2:
                raise ConstraintError(f"Rule {rule}: a range is written in [low, high].")
            return Clause(col, "between", [_strip(p) for p in parts])
        if val.startswith("{") and val.endswith("}"):
            parts = [_strip(p) for p in _split_top(val[1:-1])]
            if not parts:
                raise ConstraintError(f"Rule {rule}: the set of values is empty.")
            return Clause(col, "in", parts)
        raise ConstraintError(f"Rule {rule}: after 'in' write [low, high] or {{a, b}}.")
    return Clause(col, op, [_strip(val)])


# -- rules ---------------------------------------------------------------------------------------------
@dataclass
class Rule:
    """One declared rule. ``kind``: compare | value | combination | derived; ``text`` is what the user
    declared (public: it is part of the declaration)."""

    number: int
    kind: str
    text: str
    left: str = ""  # compare: left op right (two columns)
    op: str = ""
    right: str = ""
    then: list[Clause] = field(default_factory=list)  # value: every clause holds ...
    when: list[Clause] = field(default_factory=list)  # ... where all of these hold (empty: always)
    columns: list[str] = field(default_factory=list)  # combination: allowed tuples of these columns
    allowed: list[tuple] = field(default_factory=list)
    column: str = ""  # derived: column = formula
    formula: Any = None  # parsed ast.Expression

    @property
    def involved(self) -> list[str]:
        if self.kind == "compare":
            return [self.left, self.right] + [c.column for c in self.when]
        if self.kind == "value":
            return [c.column for c in self.then + self.when]
        if self.kind == "combination":
            return list(self.columns)
        return [self.column] + formula_columns(self.formula)

    def describe(self) -> str:
        return {"compare": "inequality between columns", "value": "value or range" + (
            " under a condition" if self.when else ""), "combination": "fixed combinations",
            "derived": "derived column"}[self.kind]

    def holds(self, df: pd.DataFrame) -> np.ndarray:
        """(n,) True where the row keeps the rule (or it cannot be checked: a missing cell)."""
        n = len(df)
        applies = np.ones(n, dtype=bool)
        for c in self.when:
            applies &= c.mask(df[c.column])
        if self.kind == "compare":
            a, b = _comparable(df[self.left]), _comparable(df[self.right])
            ok = np.asarray(pd.Series(_ORDER[self.op](a, b)).fillna(False), dtype=bool)
            checkable = (a.notna() & b.notna()).to_numpy()
            return ~applies | ~checkable | ok
        if self.kind == "value":
            ok = np.ones(n, dtype=bool)
            for c in self.then:
                s = df[c.column]
                ok &= c.mask(s) | s.isna().to_numpy()
            return ~applies | ok
        if self.kind == "combination":
            sub = df[self.columns]
            checkable = sub.notna().all(axis=1).to_numpy()
            keys = list(zip(*[sub[c].astype(object).map(_key) for c in self.columns], strict=True))
            allowed = {tuple(_key(v) for v in t) for t in self.allowed}
            ok = np.fromiter((k in allowed for k in keys), dtype=bool, count=n)
            return ~checkable | ok
        derived = evaluate_formula(self.formula, df)
        actual = df[self.column]
        if pd.api.types.is_datetime64_any_dtype(actual):
            same = (pd.to_datetime(derived) == actual).to_numpy()
        else:
            x = pd.to_numeric(actual, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            y = pd.to_numeric(derived, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            same = np.isclose(x, y, rtol=1e-6, atol=1e-9) | (np.isnan(x) & np.isnan(y))
            if pd.api.types.is_integer_dtype(actual):
                same |= np.isclose(x, np.round(y))
        return np.asarray(same, dtype=bool)


def _comparable(s: pd.Series) -> pd.Series:
    return s if pd.api.types.is_datetime64_any_dtype(s) else pd.to_numeric(s, errors="coerce").astype(float)


def parse_rule(item: Any, number: int, columns: list[str]) -> Rule:
    """One rule from the schema file (a string, or a ``{columns, allowed}`` mapping) or the page."""
    if isinstance(item, dict):
        if set(item) - {"columns", "allowed"} or not {"columns", "allowed"} <= set(item):
            raise ConstraintError(f"Rule {number}: a mapping declares fixed combinations with exactly two "
                                  "keys, columns and allowed; write other rules as text.")
        cols, allowed = item["columns"], item["allowed"]
        if not isinstance(cols, list) or len(cols) < 2 or not isinstance(allowed, list) or not allowed \
                or any(not isinstance(t, (list, tuple)) or len(t) != len(cols) for t in allowed):
            raise ConstraintError(f"Rule {number}: 'columns' lists two or more columns and 'allowed' lists "
                                  "tuples of as many values.")
        rule = Rule(number, "combination", f"({', '.join(map(str, cols))}) in {{…}}",
                    columns=[str(c) for c in cols], allowed=[tuple(t) for t in allowed])
        _check_columns(rule, columns)
        return rule
    if not isinstance(item, str) or not item.strip():
        raise ConstraintError(f"Rule {number}: write it as text, e.g. 'admission <= discharge'.")
    text = " ".join(item.split())
    if len(text) > MAX_RULE_CHARS:
        raise ConstraintError(f"Rule {number}: longer than {MAX_RULE_CHARS} characters.")
    d = _DERIVE.match(text)
    if d:
        column = _strip(d.group("a") or d.group("b"))
        rule = Rule(number, "derived", text, column=column, formula=parse_formula(d.group("expr"), number))
        _check_columns(rule, columns)
        if column in formula_columns(rule.formula):
            raise ConstraintError(f"Rule {number}: column {column!r} cannot be derived from itself.")
        return rule
    combo = re.match(r"^\((?P<cols>[^)]*)\)\s+in\s+\{(?P<vals>.*)\}$", text)
    if combo:
        cols = [_strip(c) for c in _split_top(combo.group("cols"))]
        tuples = []
        for part in _split_top(combo.group("vals")):
            if not (part.startswith("(") and part.endswith(")")):
                raise ConstraintError(f"Rule {number}: list the allowed combinations as (a, b), (c, d).")
            tuples.append(tuple(_strip(v) for v in _split_top(part[1:-1])))
        return parse_rule({"columns": cols, "allowed": [list(t) for t in tuples]}, number, columns)
    lowered = text.lower()
    if " only if " in lowered:
        i = lowered.index(" only if ")
        text_rule = f"{text[i + 9:]} if {text[:i]}"
        rule = parse_rule(text_rule, number, columns)
        rule.text = text
        return rule
    then_text, when_text = (text[:lowered.index(" if ")], text[lowered.index(" if ") + 4:]) \
        if " if " in lowered else (text, "")
    then = [_parse_clause(p, number) for p in re.split(r"\s+and\s+", then_text, flags=re.I)]
    when = [_parse_clause(p, number) for p in re.split(r"\s+and\s+", when_text, flags=re.I)] if when_text \
        else []
    if len(then) == 1 and then[0].op in _ORDER and then[0].values[0] in columns:
        c = then[0]
        rule = Rule(number, "compare", text, left=c.column, op=c.op, right=str(c.values[0]), when=when)
    else:
        rule = Rule(number, "value", text, then=then, when=when)
    _check_columns(rule, columns)
    return rule


def _check_columns(rule: Rule, columns: list[str]) -> None:
    unknown = [c for c in rule.involved if c not in columns]
    if unknown:
        raise ConstraintError(f"Rule {rule.number} names column(s) not in the table: "
                              f"{', '.join(map(repr, dict.fromkeys(unknown)))}.")
    if len(set(rule.involved)) < len(rule.involved) and rule.kind == "compare":
        raise ConstraintError(f"Rule {rule.number} compares a column with itself.")


# -- derived-column formulas ---------------------------------------------------------------------------
def _years_between(a: pd.Series, b: pd.Series) -> pd.Series:
    """Whole years from ``a`` to ``b`` (age at a visit: birthdays counted exactly); a year number
    (a date reduced to its year by the PHI rules) counts as that year."""
    if not pd.api.types.is_datetime64_any_dtype(a) or not pd.api.types.is_datetime64_any_dtype(b):
        ya = a.dt.year if pd.api.types.is_datetime64_any_dtype(a) else pd.to_numeric(a, errors="coerce")
        yb = b.dt.year if pd.api.types.is_datetime64_any_dtype(b) else pd.to_numeric(b, errors="coerce")
        return (yb - ya).astype(float)
    years = b.dt.year - a.dt.year
    before = (b.dt.month < a.dt.month) | ((b.dt.month == a.dt.month) & (b.dt.day < a.dt.day))
    return (years - before.astype(float)).astype(float)


def _days_between(a: pd.Series, b: pd.Series) -> pd.Series:
    return (pd.to_datetime(b) - pd.to_datetime(a)).dt.total_seconds() / SECONDS_PER_DAY


def _round(x: pd.Series, digits: float = 0) -> pd.Series:
    return _num(x).round(int(digits))


def _num(x: Any) -> Any:
    if isinstance(x, pd.Series) and not pd.api.types.is_datetime64_any_dtype(x):
        return pd.to_numeric(x, errors="coerce").astype(float)
    return x


#: Functions a formula may call (argument count, implementation).
FUNCTIONS = {
    "years_between": (2, _years_between), "days_between": (2, _days_between), "round": (None, _round),
    "floor": (1, lambda x: np.floor(_num(x))), "ceil": (1, lambda x: np.ceil(_num(x))),
    "abs": (1, lambda x: np.abs(_num(x))), "log": (1, lambda x: np.log(_num(x))),
    "sqrt": (1, lambda x: np.sqrt(_num(x))),
}
_BINOPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}


def parse_formula(text: str, number: int = 0) -> ast.Expression:
    """Parse a derived-column formula, allowing only numbers, column names (plain or `quoted`), the
    arithmetic operators and :data:`FUNCTIONS`."""
    names: dict[str, str] = {}

    def quote(m: re.Match) -> str:  # `column with spaces` -> a placeholder name
        key = f"_col{len(names)}_"
        names[key] = m.group(1)
        return key

    source = re.sub(r"`([^`]+)`", quote, text)
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError:
        raise ConstraintError(f"Rule {number}: the formula cannot be read; use numbers, column names, "
                              "+ - * / ** and the functions " + ", ".join(FUNCTIONS) + ".") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_FORMULA_NODES:
        raise ConstraintError(f"Rule {number}: the formula is too long.")
    for node in nodes:
        ok = isinstance(node, (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.USub,
                               ast.UAdd, *tuple(_BINOPS)))
        ok |= isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) \
            and not isinstance(node.value, bool)
        if isinstance(node, ast.Call):
            ok = isinstance(node.func, ast.Name) and node.func.id in FUNCTIONS and not node.keywords
            want = FUNCTIONS.get(getattr(node.func, "id", ""), (0, None))[0]
            ok &= want is None or len(node.args) == want
        if not ok:
            raise ConstraintError(f"Rule {number}: the formula may use numbers, column names, + - * / // % "
                                  "** and the functions " + ", ".join(FUNCTIONS) + " only.")
    for node in nodes:  # placeholders back to the quoted column names
        if isinstance(node, ast.Name) and node.id in names:
            node.id = names[node.id]
    return tree


def formula_columns(tree: ast.Expression) -> list[str]:
    calls = {id(n.func) for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return list(dict.fromkeys(n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and id(n) not in calls))


def evaluate_formula(tree: ast.Expression, df: pd.DataFrame) -> pd.Series:
    """The formula on every row of ``df`` (missing where an input is missing or the result is not
    finite). A date minus a date is in days; a date plus a number adds days."""

    def ev(node):
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant):
            return float(node.value)
        if isinstance(node, ast.Name):
            s = df[node.id]
            return s if pd.api.types.is_datetime64_any_dtype(s) else _num(s)
        if isinstance(node, ast.UnaryOp):
            v = _num(ev(node.operand))
            return -v if isinstance(node.op, ast.USub) else v
        if isinstance(node, ast.Call):
            return FUNCTIONS[node.func.id][1](*[ev(a) for a in node.args])
        a, b = ev(node.left), ev(node.right)
        a_dt = isinstance(a, pd.Series) and pd.api.types.is_datetime64_any_dtype(a)
        b_dt = isinstance(b, pd.Series) and pd.api.types.is_datetime64_any_dtype(b)
        if a_dt and b_dt and isinstance(node.op, ast.Sub):
            return _days_between(b, a)
        if a_dt != b_dt and isinstance(node.op, (ast.Add, ast.Sub)):
            date, days = (a, b) if a_dt else (b, a)
            delta = pd.to_timedelta(pd.Series(days, index=df.index) * SECONDS_PER_DAY, unit="s")
            return date + delta if isinstance(node.op, ast.Add) else date - delta
        if a_dt or b_dt:
            raise ConstraintError("A formula can subtract dates, or add days to a date; nothing else with "
                                  "dates (use years_between or days_between).")
        with np.errstate(all="ignore"):
            return _BINOPS[type(node.op)](a, b)

    out = ev(tree)
    if not isinstance(out, pd.Series):
        out = pd.Series(out, index=df.index)
    if pd.api.types.is_datetime64_any_dtype(out):
        return out
    out = pd.to_numeric(out, errors="coerce").astype(float)
    return out.where(np.isfinite(out))


# -- the set of rules of a table -----------------------------------------------------------------------
class ConstraintSet:
    """The declared rules of a table: parsed (:meth:`parse`), checked against the modelled columns
    (:meth:`bind`), applied to generated rows (:meth:`derive`, :meth:`holds`) and reported
    (:meth:`real_breaks`)."""

    def __init__(self, rules: list[Rule]):
        self.rules = rules
        self.kinds: dict[str, str] = {}  # column -> kind, once bound

    def __bool__(self) -> bool:
        return bool(self.rules)

    @classmethod
    def parse(cls, items: Any, columns: list[str]) -> ConstraintSet:
        """``items``: the ``constraints`` section (a list of rules, or one string with one rule per line)."""
        if items is None:
            return cls([])
        if isinstance(items, str):
            items = [line for line in items.splitlines() if line.strip() and not line.strip().startswith("#")]
        if not isinstance(items, list):
            raise ConstraintError("The 'constraints' section must be a list of rules.")
        rules = [parse_rule(item, i, [str(c) for c in columns]) for i, item in enumerate(items, 1)]
        derived = [r.column for r in rules if r.kind == "derived"]
        twice = {c for c in derived if derived.count(c) > 1}
        if twice:
            raise ConstraintError(f"Column(s) {', '.join(map(repr, sorted(twice)))} are derived by two "
                                  "rules.")
        for r in rules:
            if r.kind == "derived" and set(formula_columns(r.formula)) & set(derived):
                raise ConstraintError(f"Rule {r.number}: a derived column is computed from generated columns "
                                      "only, not from another derived column.")
        return cls(rules)

    @property
    def derived(self) -> list[Rule]:
        return [r for r in self.rules if r.kind == "derived"]

    @property
    def derived_columns(self) -> list[str]:
        return [r.column for r in self.derived]

    @property
    def rejection_rules(self) -> list[Rule]:
        return [r for r in self.rules if r.kind != "derived"]

    def bind(self, kinds: dict[str, str], categories: dict[str, list[Any]] | None = None,
             bounds: dict[str, tuple[float, float]] | None = None) -> ConstraintSet:
        """Read every value for its column's kind, check that each rule can hold, and keep the kinds.

        ``kinds``: column -> schema kind (modelled and derived columns); ``categories``: the categories a
        model can generate per categorical column; ``bounds``: (low, high) per numeric column (datetimes
        in seconds). Raises :class:`ConstraintError` for a rule on a dropped column, of the wrong kind,
        naming an unknown category or impossible within the bounds."""
        self.kinds = dict(kinds)
        categories, bounds = categories or {}, bounds or {}
        for r in self.rules:
            gone = [c for c in r.involved if c not in kinds]
            if gone:
                raise ConstraintError(f"Rule {r.number} uses column(s) that are not modelled "
                                      f"({', '.join(map(repr, gone))}: identifier, text, empty or removed "
                                      "for PHI). Remove the rule or keep the column.")
            if r.kind == "compare":
                ka, kb = kinds[r.left], kinds[r.right]
                dates = (ka == "datetime") != (kb == "datetime")
                if ka not in NUMERIC_KINDS or kb not in NUMERIC_KINDS or dates:
                    raise ConstraintError(f"Rule {r.number} compares {r.left!r} ({ka}) with {r.right!r} "
                                          f"({kb}): both must be numbers, or both dates.")
                a, b = bounds.get(r.left), bounds.get(r.right)
                if a is not None and b is not None:
                    # a < b can hold only if a's lowest value is below b's highest (and mirrored for >)
                    possible = _ORDER[r.op](a[0], b[1]) if r.op in ("<", "<=") else _ORDER[r.op](a[1], b[0])
                    if not possible:
                        raise ConstraintError(f"Rule {r.number} can never hold within the values the model "
                                              f"generates for {r.left!r} and {r.right!r} (their bounds). "
                                              "Check the rule's direction or the declared bounds.")
            if r.kind == "combination":
                for c in r.columns:
                    if kinds[c] in NUMERIC_KINDS:
                        raise ConstraintError(f"Rule {r.number}: fixed combinations are for categorical "
                                              f"columns; {c!r} is {kinds[c]} (use a range with 'if').")
                r.allowed = [tuple(_category(v, categories.get(c), r.number, c) for v, c in
                                   zip(t, r.columns, strict=True)) for t in r.allowed]
            r.then = [c.typed(kinds[c.column], r.number, categories.get(c.column)) for c in r.then]
            r.when = [c.typed(kinds[c.column], r.number, categories.get(c.column)) for c in r.when]
            for c in r.then:
                if c.column in bounds and not _can_hold(c, bounds[c.column]):
                    raise ConstraintError(f"Rule {r.number} can never hold: its range on {c.column!r} lies "
                                          "outside the values the model generates for it (its bounds).")
            if r.kind == "derived" and kinds[r.column] not in NUMERIC_KINDS:
                raise ConstraintError(f"Rule {r.number}: a derived column must be a number or a date; "
                                      f"{r.column!r} is {kinds[r.column]}.")
        return self

    # -- applying the rules to rows ------------------------------------------------------------------
    def derive(self, rows: pd.DataFrame, dtypes: dict[str, str] | None = None) -> pd.DataFrame:
        """``rows`` with every derived column computed from its inputs (integers rounded, dates to the
        day when the column holds whole days)."""
        out = rows.copy()
        for r in self.derived:
            value = evaluate_formula(r.formula, out)
            kind = self.kinds.get(r.column, "continuous")
            if kind == "integer":
                value = value.round().astype("Int64")
            elif kind == "datetime":
                value = pd.to_datetime(value)
                if dtypes and dtypes.get(r.column) == "dates":
                    value = value.dt.floor("D")
            out[r.column] = value
        return out

    def holds(self, rows: pd.DataFrame) -> np.ndarray:
        """(n,) True where the row keeps every rule that is checked by rejection."""
        ok = np.ones(len(rows), dtype=bool)
        for r in self.rejection_rules:
            ok &= r.holds(rows)
        return ok

    def breaking_shares(self, rows: pd.DataFrame) -> list[dict[str, Any]]:
        """Per rule: its number, text, kind and the share of ``rows`` that break it."""
        n = max(1, len(rows))
        return [{"rule": r.number, "declared as": r.text, "kind": r.describe(),
                 "share breaking it": float((~r.holds(rows)).sum() / n)} for r in self.rules]

    def worst_rule(self, rows: pd.DataFrame) -> tuple[Rule, float]:
        """The rejection rule that the fewest ``rows`` meet, and the share that meet it."""
        shares = [(r, float(r.holds(rows).mean()) if len(rows) else 0.0) for r in self.rejection_rules]
        return min(shares, key=lambda x: x[1])


def _can_hold(c: Clause, bound: tuple[float, float]) -> bool:
    lo, hi = bound
    v = [x.value / 1e9 if isinstance(x, pd.Timestamp) else x for x in c.values]
    if c.op == "between":
        return v[0] <= hi and v[1] >= lo
    if c.op in ("==",):
        return lo <= v[0] <= hi
    if c.op in (">", ">="):
        return v[0] < hi or (c.op == ">=" and v[0] == hi)
    if c.op in ("<", "<="):
        return v[0] > lo or (c.op == "<=" and v[0] == lo)
    return True
