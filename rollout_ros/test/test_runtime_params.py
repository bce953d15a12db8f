# SPDX-License-Identifier: Apache-2.0
"""`ros2 param set` on our nodes: live parameters apply at once, structural
ones only while unconfigured, and a refusal says why."""

from rclpy.parameter import Parameter

from rollout_ros.nodes.managed_node import ManagedNode


class _Node(ManagedNode):
    def __init__(self):
        super().__init__('param_probe')
        self.declare('port', '/dev/ttyACM0', 'Structural.')
        self.declare('task', '', 'Live.', read_only=False)


def test_structural_parameters_refused_with_reason_once_configured(ros):
    node = _Node()
    try:
        # Unconfigured: everything may change, it applies at configure.
        assert node.set_parameters([Parameter('port', value='/dev/ttyUSB0')])[0].successful
        node.trigger_configure()
        assert node.state_label == 'inactive'
        result = node.set_parameters([Parameter('port', value='/dev/ttyUSB1')])[0]
        assert not result.successful
        assert 'port' in result.reason and 'inactive' in result.reason
        # What works under launch: a new run with the argument, not a cleanup
        # of one node (the strategy would end the run when it leaves active).
        assert 'Stop the run' in result.reason and 'port:=<value>' in result.reason
        assert 'cleanup' not in result.reason
        assert node.param('port') == '/dev/ttyUSB0'
        assert node.set_parameters([Parameter('task', value='fold the towel')])[0].successful
        assert node.param('task') == 'fold the towel'
        desc = node.describe_parameter('port')
        assert 'unconfigured' in desc.additional_constraints and not desc.read_only
        node.trigger_cleanup()
        assert node.set_parameters([Parameter('port', value='/dev/ttyUSB1')])[0].successful
    finally:
        node.destroy_node()


def test_an_empty_list_override_keeps_the_list_type(ros):
    # rclpy alone declares [] as a byte array and refuses it for a string list.
    class _Lists(ManagedNode):
        def __init__(self):
            super().__init__('list_probe', parameter_overrides=[Parameter('cameras', Parameter.Type.STRING_ARRAY, [])])
            self.declare('cameras', ['front'], 'Structural list.')

    node = _Lists()
    try:
        assert list(node.param('cameras')) == []
        assert node.get_parameter('cameras').type_ == Parameter.Type.STRING_ARRAY
    finally:
        node.destroy_node()
