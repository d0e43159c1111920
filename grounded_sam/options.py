"""Declared options: a component's settings as one frozen, validated dataclass.

A component (detector, segmenter) keeps its settings in ``self.options``, an instance of a
frozen dataclass derived from :class:`Options` whose ``check()`` is the one function that
validates them (built from :mod:`grounded_sam.validation`). The constructor, a per-call
override (``detector.with_options(box_threshold=0.2)``, ``pipe.detect(..., box_threshold=0.2)``)
and an assignment (``detector.box_threshold = 0.2``, see :class:`Configurable`) all go
through it, so a web request's
``box_threshold=5`` is refused exactly as the constructor refuses it.
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any, TypeVar

T = TypeVar("T", bound="Options")
C = TypeVar("C", bound="Configurable")


class OptionTypeError(TypeError, ValueError):
    """An option of the wrong type (a string threshold): a ``TypeError`` as the constructors
    always raised, and a ``ValueError`` as every other bad option value, so that callers such
    as the web service catch one kind."""


@dataclasses.dataclass(frozen=True)
class Options:
    """Base of the options dataclasses; subclasses define fields and :meth:`check`."""

    def __post_init__(self) -> None:
        try:
            checked = self.check()
        except TypeError as exc:  # a value of the wrong type is a bad value too (web forms)
            raise OptionTypeError(str(exc)) from None
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def check(self) -> dict[str, Any]:
        """The fields that need a canonical value (``int``, ``float``, tuple), checked.

        Raises:
            TypeError / ValueError: naming the option, the value and the allowed range.
        """
        return {}

    def replace(self: T, **changes: Any) -> T:
        """A copy with ``changes``, validated like the constructor.

        Raises:
            ValueError: an option this component does not have (the known ones are listed).
        """
        names = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(names))
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no option(s) {unknown}; the options are {names}"
            )
        return dataclasses.replace(self, **changes)


class Configurable:
    """Mixin of a component whose settings are ``self.options`` (an :class:`Options`).

    Each option reads as an attribute (``detector.box_threshold``); setting one replaces
    ``self.options`` through its check (``detector.box_threshold = 5`` raises like the
    constructor).
    """

    options: Options

    def __getattr__(self, name: str) -> Any:  # only for names not found the usual way
        options = self.__dict__.get("options")
        if options is not None and name in _names(options):
            return getattr(options, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        options = self.__dict__.get("options")
        if options is not None and name in _names(options):
            value, name = options.replace(**{name: value}), "options"
        object.__setattr__(self, name, value)

    def with_options(self: C, **changes: Any) -> C:
        """The same component (models shared, not copied) with some options changed for one
        request or call; ``self`` is not modified. No change returns ``self``."""
        if not changes:
            return self
        options = self.options.replace(**changes)
        out = copy.copy(self)
        out.options = options
        return out


def _names(options: Options) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(options))
