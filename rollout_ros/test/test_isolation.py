# SPDX-License-Identifier: Apache-2.0
"""Runs that share a ROS domain stay apart: each demo lives in a namespace of
its own, and a strategy refuses to drive nodes whose names another run also
serves."""

import json
import os
import subprocess
import sys

import pytest
from rclpy.parameter import Parameter

from rollout_ros.demo import ROBOT_ID, ROBOT_TYPE


def test_two_demos_at_once_on_one_domain(tmp_path):
    """As two `make demo` started together: one workdir, one domain (the
    session's), one host; both finish, neither sees the other's commands."""
    cmd = [sys.executable, '-m', 'rollout_ros.demo', '--workdir', str(tmp_path / 'demo'), '--duration', '6']
    procs = [
        subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [p.communicate(timeout=400) for p in procs]
    for p, (out, err) in zip(procs, results):
        assert p.returncode == 0, err[-3000:]
        summary = json.loads(out.strip().splitlines()[-1])
        assert summary['ticks'] >= 30, summary  # 180 when idle; a loaded 2-core host runs fewer
        # No driver saw a command from anyone but its own strategy.
        assert 'publish on' not in err and 'publishes on' not in err and 'nodes serve' not in err, err[-3000:]
    namespaces = {
        line.split('namespace ')[1]
        for out, _ in results
        for line in out.splitlines()
        if line.startswith('[demo] ROS_DOMAIN_ID=')
    }
    domains = {
        line.split()[1] for out, _ in results for line in out.splitlines() if line.startswith('[demo] ROS_DOMAIN_ID=')
    }
    assert len(namespaces) == 2 and domains == {f'ROS_DOMAIN_ID={os.environ["ROS_DOMAIN_ID"]}'}, (namespaces, domains)


def test_a_second_server_of_a_managed_node_is_refused(ros, emulator, rollout_config):
    """Another run with the same names (here a second /dup/robot_driver): the
    strategy refuses at configure, before any node of either run moves."""
    from helpers import spin_in_background

    from rollout_ros.cli import Rollout
    from rollout_ros.nodes.robot_driver_node import RobotDriverNode

    twin = RobotDriverNode(
        namespace='/dup',
        parameter_overrides=[
            Parameter('robot_port', value='/dev/null'),
            Parameter('robot_type', value=ROBOT_TYPE),
            Parameter('robot_id', value=ROBOT_ID),
        ],
    )
    ex = spin_in_background(twin)
    rollout = Rollout(rollout_config(namespace='/dup'))
    try:
        with pytest.raises(RuntimeError, match=r'2 nodes serve /dup/robot_driver/change_state.*namespace'):
            rollout.start()
        assert emulator.goal_writes == []
        assert all(n.state_label == 'unconfigured' for n in rollout.managed)
        assert twin.state_label == 'unconfigured'
    finally:
        rollout.stop()
        ex.shutdown(timeout_sec=1.0)
        twin.destroy_node()


def test_namespace_flag_is_checked_before_anything_starts():
    from rollout_ros.cli import namespace_from
    from rollout_ros.core.errors import ConfigError

    assert namespace_from('arm1') == '/arm1' and namespace_from('/lab/arm1/') == '/lab/arm1'
    assert namespace_from('') == '' and namespace_from('/') == ''
    with pytest.raises(ConfigError, match='--namespace'):
        namespace_from('1arm')
    with pytest.raises(ConfigError, match='--namespace'):
        namespace_from('arm-1')
