"""Where rules come from: the built-ins, and custom rules from ``memmesh.policies`` entry points.

This is the only policy module that touches the environment (``importlib.metadata`` reads the
installed distributions' metadata). Entry points are looked up lazily, by name, the first time a
policy names a rule that is not built in; the outcome (the rule, its absence, or why it failed to
load) is cached for the life of the registry, so a node decides with the same code throughout.
Built-in names are reserved: an entry point cannot replace ``lww`` and the others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import metadata
from typing import Protocol

from .model import RULE_NAME_RE, RuleImpl, is_int
from .rules import BUILTIN_RULES

__all__ = [
    "DEFAULT_REGISTRY",
    "ENTRY_POINT_GROUP",
    "EntryPointLike",
    "Registry",
    "RuleLoadError",
    "entry_points_named",
    "get_rule",
]

ENTRY_POINT_GROUP = "memmesh.policies"


class RuleLoadError(Exception):
    """A custom rule exists but cannot be used. ``error`` is a short, deterministic code."""

    def __init__(self, name: str, error: str, detail: str) -> None:
        super().__init__(f"policy rule {name!r}: {detail}")
        self.name = name
        self.error = error
        self.detail = detail


class EntryPointLike(Protocol):
    """What the registry uses of an ``importlib.metadata.EntryPoint``."""

    @property
    def name(self) -> str: ...

    @property
    def value(self) -> str: ...

    def load(self) -> object: ...


def entry_points_named(name: str) -> Sequence[EntryPointLike]:
    """The installed entry points of group ``memmesh.policies`` called ``name``."""
    return tuple(metadata.entry_points(group=ENTRY_POINT_GROUP, name=name))


class Registry:
    """Resolves rule names: built-ins first, then registered rules, then entry points.

    ``find`` replaces the entry-point lookup (tests pass a fake one); by default the registry
    calls this module's :func:`entry_points_named` at lookup time.
    """

    def __init__(self, find: Callable[[str], Sequence[EntryPointLike]] | None = None) -> None:
        self._find = find
        self._cache: dict[str, RuleImpl | RuleLoadError | None] = {}

    def register(self, impl: object) -> RuleImpl:
        """Add a custom rule by hand (an embedding application's own rule, or a test's)."""
        rule = _checked(impl, None)
        if rule.name in BUILTIN_RULES:
            raise ValueError(f"{rule.name!r} is a built-in rule and cannot be replaced")
        self._cache[rule.name] = rule
        return rule

    def get(self, name: str) -> RuleImpl | None:
        """The rule called ``name``, or ``None`` if nothing provides it.

        Raises :class:`RuleLoadError` (every time, from the cache) if an entry point provides it
        but cannot be loaded or does not look like a rule.
        """
        builtin = BUILTIN_RULES.get(name)
        if builtin is not None:
            return builtin
        if name not in self._cache:
            self._cache[name] = self._load(name)
        found = self._cache[name]
        if isinstance(found, RuleLoadError):
            raise found
        return found

    def clear(self) -> None:
        """Forget every loaded entry point and registered rule."""
        self._cache.clear()

    def _load(self, name: str) -> RuleImpl | RuleLoadError | None:
        if not RULE_NAME_RE.fullmatch(name):
            return None
        find = self._find or entry_points_named
        found = [ep for ep in find(name) if ep.name == name]
        targets = sorted({ep.value for ep in found})
        if not targets:
            return None
        if len(targets) > 1:
            return RuleLoadError(
                name, "ambiguous", f"several entry points provide it: {', '.join(targets)}"
            )
        entry = next(ep for ep in found if ep.value == targets[0])
        try:
            loaded = entry.load()
            if isinstance(loaded, type):
                loaded = loaded()
        except Exception as exc:  # noqa: BLE001 - a broken plugin escalates, it never crashes
            return RuleLoadError(name, type(exc).__name__, f"loading {entry.value} failed: {exc}")
        try:
            return _checked(loaded, name)
        except ValueError as exc:
            return RuleLoadError(name, "not_a_rule", str(exc))


def _checked(impl: object, name: str | None) -> RuleImpl:
    """``impl`` if it has a rule's ``name``, ``version`` and ``decide``; ``ValueError`` if not."""
    impl_name = getattr(impl, "name", None)
    if not isinstance(impl_name, str) or not RULE_NAME_RE.fullmatch(impl_name):
        raise ValueError(
            f"{impl!r} has no valid rule name (a string matching {RULE_NAME_RE.pattern})"
        )
    if name is not None and impl_name != name:
        raise ValueError(f"the entry point {name!r} gives a rule called {impl_name!r}")
    version = getattr(impl, "version", None)
    if not (is_int(version) and isinstance(version, int) and version >= 1):
        raise ValueError(f"rule {impl_name!r} has no integer version >= 1")
    if not callable(getattr(impl, "decide", None)):
        raise ValueError(f"rule {impl_name!r} has no decide(candidates, params, ctx) method")
    assert isinstance(impl, RuleImpl)
    return impl


DEFAULT_REGISTRY = Registry()


def get_rule(name: str) -> RuleImpl | None:
    """The rule called ``name`` in the default registry (built-in or entry point), or ``None``."""
    return DEFAULT_REGISTRY.get(name)
