"""SCIM filter expressions (RFC 7644 §3.4.2.2): a tokenizer and a recursive-descent parser.

The parser only builds a small AST; what an attribute path *means* (which column, whether it may be
filtered at all) is decided by the resource mappings in web.scim.resources, so the grammar stays
independent of the storage. Grammar (precedence: `not` > `and` > `or`, as the RFC's ABNF implies):

    filter   := or
    or       := and ("or" and)*
    and      := unary ("and" unary)*
    unary    := "not" "(" filter ")" | "(" filter ")" | attrExp | valuePath
    attrExp  := attrPath "pr" | attrPath compareOp compValue
    valuePath:= attrPath "[" filter "]"           e.g. members[value eq "12"]

Operators and `and`/`or`/`not` are case-insensitive; attribute names are case-insensitive too (the
mappings lower-case them). Anything malformed raises FilterError, answered as 400 invalidFilter.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Union

COMPARE_OPS = frozenset({"eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"})


class FilterError(ValueError):
    """The filter does not parse, or names something the resource cannot filter on."""


@dataclass(frozen=True)
class AttrPath:
    """`[urn:…:]attr[.sub]` — `schema` is the URN prefix when given (lower-cased later)."""

    schema: str | None
    attr: str
    sub: str | None = None

    def __str__(self) -> str:
        base = f"{self.schema}:{self.attr}" if self.schema else self.attr
        return f"{base}.{self.sub}" if self.sub else base


@dataclass(frozen=True)
class Compare:
    path: AttrPath
    op: str  # one of COMPARE_OPS, lower-case
    value: Any  # str | bool | int | float | None


@dataclass(frozen=True)
class Present:
    path: AttrPath


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    expr: Node


@dataclass(frozen=True)
class ValuePath:
    """`attr[filter]`: `filter`'s paths are sub-attributes of `path`."""

    path: AttrPath
    expr: Node


Node = Union[Compare, Present, And, Or, Not, ValuePath]


# --- tokenizer ---------------------------------------------------------------------------------

# A JSON string literal (escapes allowed), a number, punctuation, or a bare word (attribute path,
# operator, keyword, true/false/null). URNs contain ':' and '.', so a word runs until whitespace
# or punctuation.
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<string>"(?:[^"\\]|\\.)*")
    | (?P<punct>[()\[\]])
    | (?P<word>[^\s()\[\]"]+)
    )""", re.VERBOSE)
_NUMBER = re.compile(r"-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?\Z")
_ATTR_NAME = re.compile(r"[A-Za-z$][\w$-]*\Z")


@dataclass(frozen=True)
class Token:
    kind: str  # string | punct | word | end
    text: str
    pos: int


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise FilterError(f"unexpected character at position {pos}: {text[pos:pos + 10]!r}")
        kind = m.lastgroup or "word"
        tokens.append(Token(kind, m.group(kind), m.start(kind)))
        pos = m.end()
    tokens.append(Token("end", "", len(text)))
    return tokens


def parse_path(text: str) -> AttrPath:
    """An attribute path as used in filters, sortBy and attributes/excludedAttributes."""
    schema = None
    rest = text
    if text.lower().startswith("urn:"):
        # The attribute is the last ':' segment; a URN itself contains dots ("2.0"), so split the
        # schema off first and only then look for the sub-attribute.
        schema, sep, rest = text.rpartition(":")
        if not sep or not schema:
            raise FilterError(f"bad attribute path {text!r}")
    attr, _, sub = rest.partition(".")
    if not _ATTR_NAME.match(attr) or (sub and not _ATTR_NAME.match(sub)):
        raise FilterError(f"bad attribute path {text!r}")
    return AttrPath(schema, attr, sub or None)


def _literal(token: Token) -> Any:
    if token.kind == "string":
        try:
            return json.loads(token.text)
        except ValueError:
            raise FilterError(f"bad string literal at position {token.pos}") from None
    if token.kind == "word":
        low = token.text.lower()
        if low in ("true", "false"):
            return low == "true"
        if low == "null":
            return None
        if _NUMBER.match(token.text):
            number = float(token.text)
            return int(number) if number.is_integer() and "." not in token.text and "e" not in low else number
    raise FilterError(f"expected a value (string, number, true, false, null) at position {token.pos}")


# --- parser ------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        token = self.tokens[self.i]
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token.kind == "word" and token.text.lower() == word:
            self.i += 1
            return True
        return False

    def expect(self, punct: str) -> None:
        token = self.next()
        if token.kind != "punct" or token.text != punct:
            raise FilterError(f"expected {punct!r} at position {token.pos}")

    def parse(self) -> Node:
        node = self.parse_or()
        token = self.peek()
        if token.kind != "end":
            raise FilterError(f"unexpected {token.text!r} at position {token.pos}")
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.keyword("or"):
            node = Or(node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_unary()
        while self.keyword("and"):
            node = And(node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        token = self.peek()
        if token.kind == "word" and token.text.lower() == "not":
            # "not" is only an operator when a parenthesis follows (RFC: "not" "(" valFilter ")").
            following = self.tokens[self.i + 1]
            if following.kind == "punct" and following.text == "(":
                self.i += 1
                self.expect("(")
                node = self.parse_or()
                self.expect(")")
                return Not(node)
        if token.kind == "punct" and token.text == "(":
            self.next()
            node = self.parse_or()
            self.expect(")")
            return node
        return self.parse_attr_exp()

    def parse_attr_exp(self) -> Node:
        token = self.next()
        if token.kind != "word":
            raise FilterError(f"expected an attribute path at position {token.pos}")
        path = parse_path(token.text)
        following = self.peek()
        if following.kind == "punct" and following.text == "[":
            if path.sub:
                raise FilterError(f"a value filter applies to a multi-valued attribute, not {path}")
            self.next()
            inner = self.parse_or()
            self.expect("]")
            # RFC 7644 allows `attr[filter].sub` only in PATCH paths, not in filters.
            return ValuePath(path, inner)
        op_token = self.next()
        op = op_token.text.lower() if op_token.kind == "word" else ""
        if op == "pr":
            return Present(path)
        if op not in COMPARE_OPS:
            raise FilterError(f"expected an operator ({' '.join(sorted(COMPARE_OPS))} pr) at position {op_token.pos}")
        return Compare(path, op, _literal(self.next()))


def parse_filter(text: str) -> Node:
    if not text or not text.strip():
        raise FilterError("the filter is empty")
    if len(text) > 4096:
        # Bounded so that a hostile filter cannot make the recursive descent run out of stack.
        raise FilterError("the filter is too long (at most 4096 characters)")
    try:
        return _Parser(text).parse()
    except RecursionError:
        raise FilterError("the filter nests too deeply") from None


__all__ = ["And", "AttrPath", "COMPARE_OPS", "Compare", "FilterError", "Node", "Not", "Or", "Present",
           "ValuePath", "parse_filter", "parse_path", "tokenize"]
