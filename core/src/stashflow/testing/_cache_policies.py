"""`CachePolicyTests`: the cache-policy contract, as tests a policy's project subclasses.

Supply ``policy`` and ``inputs`` (a list of sample task inputs, each a dict of
argument name -> value) and subclass::

    class TestMyPolicy(CachePolicyTests):
        @pytest.fixture
        def policy(self):
            return MyPolicy()

        @pytest.fixture
        def inputs(self):
            return [{"x": 1}, {"x": 2}, {"x": {"a", "b"}}]

Keys are computed against a sample context: a task named ``sample`` (the
function `sample_task` below) in a flow run with a fixed id. The policy and the
inputs must pickle (they are sent to a subprocess), so define the policy's
class in an importable module. Set ``keys_differ_by_input = False`` for a
policy whose key must not depend on the inputs.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

FLOW_RUN_ID = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
TASK_RUN_ID = "00112233445566778899aabbccddeeff"
FLOW_PARAMETERS = {"day": "2026-11-24", "regions": frozenset({"eu", "us", "apac"})}


def sample_task(x=None, y=None, **more):
    """The task whose runs the sample context describes."""
    return x


def sample_context(flow_run_id: str = FLOW_RUN_ID, flow_parameters: dict | None = None,
                   inputs: dict | None = None):
    """A TaskRunContext for a run of `sample_task` inside a flow run with a fixed id."""
    from stashflow.engine import task
    from stashflow.engine.context import TaskRun, TaskRunContext

    parameters = FLOW_PARAMETERS if flow_parameters is None else flow_parameters
    flow_run = SimpleNamespace(id=flow_run_id, name=f"sample-flow-{flow_run_id[:8]}",
                               flow_name="sample-flow", parameters=parameters, run_count=1)
    task_run = TaskRun("sample", flow_run)
    task_run._id = TASK_RUN_ID
    return TaskRunContext(task(sample_task, name="sample"), task_run, flow_run, inputs or {})


def keys_for(policy: Any, inputs: list[dict], flow_parameters: dict | None = None) -> list:
    """The key `policy` computes for each of `inputs`, in the sample context."""
    parameters = FLOW_PARAMETERS if flow_parameters is None else flow_parameters
    return [policy.compute_key(sample_context(inputs=i), i, parameters) for i in inputs]


_SUBPROCESS = textwrap.dedent("""
    import json, pickle, sys
    from stashflow.testing._cache_policies import keys_for

    with open(sys.argv[1], "rb") as f:
        policy, inputs = pickle.load(f)
    print(json.dumps(keys_for(policy, inputs)))
""")


class CachePolicyTests:
    """The `CachePolicy` contract. Fixtures: ``policy`` and ``inputs``."""

    #: whether different inputs must give different keys (else: one key for all of them)
    keys_differ_by_input: ClassVar[bool] = True
    #: the PYTHONHASHSEED values of the subprocesses that compute the keys again
    hash_seeds: ClassVar[tuple[str, ...]] = ("0", "4242")

    @pytest.fixture
    def _inputs(self, inputs) -> list[dict]:
        assert inputs and all(isinstance(i, dict) for i in inputs), (
            "the `inputs` fixture must be a non-empty list of dicts (argument name -> value)"
        )
        return inputs

    def test_is_a_cache_policy(self, policy):
        from stashflow.cache_policies import CachePolicy

        assert isinstance(policy, CachePolicy)

    def test_keys_are_valid_storage_keys_or_none(self, policy, _inputs):
        from stashflow.keys import validate_key

        for key in keys_for(policy, _inputs):
            assert key is None or validate_key(key) == key

    def test_keys_are_stable_across_calls_and_copies(self, policy, _inputs):
        first = keys_for(policy, _inputs)
        assert keys_for(policy, _inputs) == first
        assert keys_for(pickle.loads(pickle.dumps(policy)), pickle.loads(pickle.dumps(_inputs))) == first

    def test_keys_are_stable_across_processes_and_hash_seeds(self, policy, _inputs, tmp_path):
        expected = keys_for(policy, _inputs)
        blob = tmp_path / "policy.pickle"
        blob.write_bytes(pickle.dumps((policy, _inputs)))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        for seed in self.hash_seeds:
            out = subprocess.run([sys.executable, "-c", _SUBPROCESS, str(blob)],
                                 env={**env, "PYTHONHASHSEED": seed}, capture_output=True,
                                 text=True, timeout=120)
            assert out.returncode == 0, out.stderr
            assert json.loads(out.stdout) == expected, f"keys changed with PYTHONHASHSEED={seed}"

    def test_inputs_change_the_key_as_the_policy_claims(self, policy, _inputs):
        keys = keys_for(policy, _inputs)
        if not self.keys_differ_by_input:
            assert len(set(keys)) == 1, "the key changes with the inputs: set keys_differ_by_input"
            return
        assert None not in keys
        distinct = {pickle.dumps(i) for i in _inputs}
        assert len(set(keys)) == len(keys), (
            "some different inputs share a key" if len(distinct) == len(_inputs)
            else "the `inputs` fixture repeats an input"
        )

    def test_configure_keeps_the_key(self, policy, _inputs):
        serial = policy.configure(isolation_level="SERIALIZABLE")
        assert serial.isolation_level == "SERIALIZABLE"
        assert keys_for(serial, _inputs) == keys_for(policy, _inputs)
