"""Embedded broker and Postgres for the demo and the tests (see :mod:`iopcare.embedded.runtime`);
:mod:`iopcare.embedded.demo` runs the whole system on them (`iopcare demo`)."""

from iopcare.embedded.runtime import EmbeddedRuntime, EmbeddedRuntimeError, RuntimeAddresses

__all__ = ["EmbeddedRuntime", "EmbeddedRuntimeError", "RuntimeAddresses"]
