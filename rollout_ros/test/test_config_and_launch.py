"""config/*.yaml must name only declared parameters with the declared types,
and every key must carry a comment; the launch file must at least compile
(and build its description where the launch packages are installed)."""

import importlib.util
import py_compile
from pathlib import Path

import pytest
import yaml
from rcl_interfaces.msg import ParameterType

from rollout_ros.nodes.camera_node import CameraNode
from rollout_ros.nodes.policy_node import PolicyNode
from rollout_ros.nodes.robot_driver_node import RobotDriverNode
from rollout_ros.strategies.base_strategy import BaseStrategyNode

PKG = Path(__file__).resolve().parents[1]
NODE_CLASSES = {'robot_driver': RobotDriverNode, 'camera_front': CameraNode, 'policy': PolicyNode,
                'base_strategy': BaseStrategyNode}
PY_TYPES = {ParameterType.PARAMETER_BOOL: bool, ParameterType.PARAMETER_INTEGER: int,
            ParameterType.PARAMETER_DOUBLE: float, ParameterType.PARAMETER_STRING: str,
            ParameterType.PARAMETER_STRING_ARRAY: list}


def test_base_yaml_matches_declared_parameters(ros):
    raw = yaml.safe_load((PKG / 'config' / 'base.yaml').read_text())
    # '/**/' makes the sections match in any namespace.
    assert all(key.startswith('/**/') for key in raw)
    config = {key.removeprefix('/**/'): value for key, value in raw.items()}
    assert set(config) == set(NODE_CLASSES)
    for section, node_cls in NODE_CLASSES.items():
        node = node_cls(section) if section != 'camera_front' else node_cls('camera_front')
        try:
            declared = {name: node.describe_parameter(name) for name in node._parameters
                        if name not in ('use_sim_time', 'start_type_description_service')}
            values = config[section]['ros__parameters']
            assert set(values) == set(declared), (section, set(values) ^ set(declared))
            for name, value in values.items():
                assert declared[name].description, f'{section}.{name} has no description'
                want = PY_TYPES[declared[name].type]
                assert isinstance(value, want), f'{section}.{name}: {value!r} is not {want.__name__}'
        finally:
            node.destroy_node()


def test_every_yaml_key_is_commented():
    for path in (PKG / 'config').glob('*.yaml'):
        for line in path.read_text().splitlines():
            stripped = line.strip()
            if not stripped or stripped.startswith('#') or stripped.endswith(':'):
                continue
            if ':' in stripped and '#' not in stripped:
                # A value continued from the previous comment block is fine
                # only for the strategy's robot parameters, documented above.
                assert stripped.split(':')[0] in ('calibration_dir', 'use_degrees', 'joint_prefix'), \
                    f'{path.name}: no comment on {stripped!r}'


def test_launch_file_compiles_and_builds():
    path = PKG / 'launch' / 'base.launch.py'
    py_compile.compile(str(path), doraise=True)
    if importlib.util.find_spec('launch') is None or importlib.util.find_spec('launch_ros') is None:
        pytest.skip('launch/launch_ros not installed (they come with a ROS install)')
    spec = importlib.util.spec_from_file_location('base_launch', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert description.entities
