"""Embedded broker and Postgres for the demo and the tests (see :mod:`iopcare.embedded.runtime`)."""

from iopcare.embedded.runtime import EmbeddedRuntime, EmbeddedRuntimeError, RuntimeAddresses

__all__ = ["EmbeddedRuntime", "EmbeddedRuntimeError", "RuntimeAddresses"]
