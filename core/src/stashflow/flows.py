"""Flows, where Prefect users look for them (`from stashflow.flows import flow, Flow`)."""

from .engine import Flow, flow

__all__ = ["Flow", "flow"]
