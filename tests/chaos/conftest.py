"""Fixtures of this suite: the field rig (tests/rig_fixtures.py)."""

from tests.rig_fixtures import Rig, fault_fs, module_rig, rig, rig_ca

__all__ = ["Rig", "fault_fs", "module_rig", "rig", "rig_ca"]
