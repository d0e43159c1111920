"""Adapters to other libraries' detection types (each imports its library when called)."""

from grounded_sam.interop.supervision import from_supervision, to_supervision

__all__ = ["from_supervision", "to_supervision"]
