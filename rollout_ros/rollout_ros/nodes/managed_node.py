# SPDX-License-Identifier: Apache-2.0
"""Lifecycle node base: transition discipline shared by every rollout_ros node.

rclpy lets an exception in a transition callback escape into the service
handler (the caller then only sees a failed call, and the node can be left
half-configured). Here every transition runs through one wrapper that logs
the error, keeps it in `last_error` for the supervising strategy, releases
what a failed configure acquired, and returns FAILURE.

Subclasses write four hooks: configure/activate set up, deactivate/cleanup
take down, each safe on a half set-up node. There is one way down from any
state, shared by cleanup, shutdown and the error transition: deactivate if
active, then cleanup if configured (a faulted driver whose error path only
half released left a second joint_states publisher after reconfigure).
"""

import traceback

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter

from rollout_ros.core.errors import ConfigError

SUCCESS = TransitionCallbackReturn.SUCCESS
FAILURE = TransitionCallbackReturn.FAILURE


class ManagedNode(LifecycleNode):
    def __init__(self, node_name: str, **kwargs):
        self.last_error: str = ''
        self.structural_params: set[str] = set()
        # What configure/activate set up and no deactivate/cleanup took down yet.
        self._configured = False
        self._activated = False
        self.finalizing = False  # inside the shutdown transition (strategies finalize their nodes)
        self._destroyed = False
        self._final_state = ''
        super().__init__(node_name, **kwargs)
        self.add_on_set_parameters_callback(self._refuse_structural_change)

    # Parameters -------------------------------------------------------------
    def declare(
        self,
        name: str,
        default,
        description: str,
        *,
        read_only: bool = True,
        min_value=None,
        max_value=None,
        additional_constraints: str = '',
    ):
        """Declare a parameter with a descriptor (shown by `ros2 param describe`).

        `read_only` marks a structural parameter: it takes effect at configure,
        so `ros2 param set` takes it only while the node is unconfigured and
        refuses it otherwise with the reason (changing a port or a checkpoint
        under a running robot would be unsafe, and silently ignoring the change
        would be worse). The others (e.g. `task`) apply live.
        """
        if read_only:
            self.structural_params.add(name)
            additional_constraints = ' '.join(
                filter(
                    None, [additional_constraints, 'Set only while the node is unconfigured (applies at configure).']
                )
            )
        desc = ParameterDescriptor(description=description, additional_constraints=additional_constraints)
        if min_value is not None or max_value is not None:
            if isinstance(default, float):
                desc.floating_point_range = [
                    FloatingPointRange(
                        from_value=float(min_value if min_value is not None else -1e300),
                        to_value=float(max_value if max_value is not None else 1e300),
                    )
                ]
            elif isinstance(default, int) and not isinstance(default, bool):
                desc.integer_range = [
                    IntegerRange(
                        from_value=int(min_value if min_value is not None else -(2**62)),
                        to_value=int(max_value if max_value is not None else 2**62),
                        step=0,
                    )
                ]
        override = self._parameter_overrides.get(name)
        if isinstance(default, list) and default and override is not None and override.value == []:
            # rclpy re-infers an override's type from its value, and [] reads as a
            # byte array: declare with the default, then set the empty list typed.
            self.declare_parameter(name, default, desc, ignore_override=True)
            self.set_parameters([Parameter(name, Parameter.Type.from_parameter_value(default), [])])
            return self.get_parameter(name)
        return self.declare_parameter(name, default, desc)

    def param(self, name: str):
        return self.get_parameter(name).value

    def _refuse_structural_change(self, params) -> SetParametersResult:
        state = self.state_label
        locked = [p.name for p in params if p.name in self.structural_params]
        if locked and state != 'unconfigured':
            # Cleaning a node up under a running strategy ends the run (the
            # strategy stops when a node it manages leaves active), so the
            # advice is what keeps the robot's run intact: a new run.
            names = ', '.join(locked)
            return SetParametersResult(
                successful=False,
                reason=(
                    f'{names} take{"s" if len(locked) == 1 else ""} effect at configure and '
                    f'{self.get_fully_qualified_name()} is {state}. Stop the run and start it again with the '
                    f'new value: ros2 launch ... {locked[0]}:=<value> (or the key under this node in '
                    'params_file), or the matching rollout flag. Only a node that no strategy manages can '
                    'instead be taken to unconfigured with ros2 lifecycle set, set, and configured again.'
                ),
            )
        return SetParametersResult(successful=True)

    @property
    def state_label(self) -> str:
        if self._destroyed:
            return self._final_state
        return self._state_machine.current_state[1]

    def destroy_node(self) -> None:
        first = not self._destroyed
        if first:
            self._final_state = self._state_machine.current_state[1]
        super().destroy_node()
        # rclpy leaves the lifecycle services served until the state machine
        # is garbage-collected: a later run in this process (tests, the Python
        # API) would find two servers of <node>/change_state and refuse.
        if first:
            self._destroyed = True
            self._state_machine.destroy_when_not_in_use()

    # Hooks for subclasses ---------------------------------------------------
    def configure(self) -> None: ...

    def activate(self) -> None: ...

    def deactivate(self) -> None: ...

    def cleanup(self) -> None: ...

    def _teardown(self) -> None:
        """The one way down, from any state: deactivate if active, then cleanup
        if configured; cleanup still runs when deactivate failed."""
        try:
            if self._activated:
                self._activated = False
                self.deactivate()
        finally:
            if self._configured:
                self._configured = False
                self.cleanup()

    def abort(self) -> None:
        """A second Ctrl-C cut the orderly stop short, maybe in the middle of a
        transition: do now only what must never be skipped (a driver's torque
        policy), nothing that waits. Must be safe in any state."""

    # Transition wrappers ----------------------------------------------------
    def _run(self, name: str, fn, undo=None) -> TransitionCallbackReturn:
        try:
            fn()
            return SUCCESS
        except ConfigError as e:
            self.last_error = str(e)
            self.get_logger().error(f'{name} failed: {e}')
        except Exception as e:  # noqa: BLE001 - every failure must end as FAILURE, not a crash
            self.last_error = f'{type(e).__name__}: {e}'
            self.get_logger().error(f'{name} failed: {self.last_error}\n{traceback.format_exc()}')
        if undo is not None:
            try:
                undo()
            except Exception as e:  # noqa: BLE001
                self.get_logger().error(f'releasing after failed {name}: {e}')
        return FAILURE

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.last_error = ''  # the latest failure since the last configure
        self.finalizing = False
        ret = self._run('configure', self.configure, undo=self.cleanup)
        self._configured = ret == SUCCESS
        return ret

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        # Lifecycle publishers are enabled first: what activate starts (a control
        # loop's first command, a handshake) must not be dropped by a publisher
        # that only comes alive when the transition returns.
        super().on_activate(state)
        ret = self._run('activate', self.activate, undo=self.deactivate)
        self._activated = ret == SUCCESS
        if ret != SUCCESS:
            super().on_deactivate(state)
        return ret

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        # Our own deactivate runs first so a safety command can still go out on
        # lifecycle publishers before the base class disables them.
        self._activated = False
        ret = self._run('deactivate', self.deactivate)
        super().on_deactivate(state)
        return ret

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._configured = False
        return self._run('cleanup', self.cleanup)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.finalizing = True
        return self._run('shutdown', self._teardown)

    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        # Back to unconfigured with nothing of the failed configuration left,
        # so a later configure starts from scratch.
        self._run('error recovery', self._teardown)
        return SUCCESS
