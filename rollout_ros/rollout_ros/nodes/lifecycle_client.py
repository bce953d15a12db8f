# SPDX-License-Identifier: Apache-2.0
"""Driving other nodes through their lifecycle services, from any thread.

The calls block the calling thread on an Event while the executor's other
threads deliver the response: the clients live in a reentrant group so a
strategy transition running inside the executor cannot deadlock on them.
"""

import threading

from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.callback_groups import ReentrantCallbackGroup

TRANSITIONS = {
    'configure': Transition.TRANSITION_CONFIGURE,
    'activate': Transition.TRANSITION_ACTIVATE,
    'deactivate': Transition.TRANSITION_DEACTIVATE,
    'cleanup': Transition.TRANSITION_CLEANUP,
    'shutdown': Transition.TRANSITION_UNCONFIGURED_SHUTDOWN,
}


def call_blocking(client, request, timeout_s: float):
    """Call a service and wait; None on timeout (the request is dropped)."""
    done = threading.Event()
    future = client.call_async(request)
    future.add_done_callback(lambda _: done.set())
    if not done.wait(timeout_s):
        client.remove_pending_request(future)
        return None
    return future.result()


class LifecycleClient:
    def __init__(self, node, target: str):
        self.target = target.rstrip('/')
        group = ReentrantCallbackGroup()
        self._change = node.create_client(ChangeState, f'{self.target}/change_state', callback_group=group)
        self._get = node.create_client(GetState, f'{self.target}/get_state', callback_group=group)
        self._node = node

    def destroy(self) -> None:
        self._node.destroy_client(self._change)
        self._node.destroy_client(self._get)

    def wait_ready(self, timeout_s: float) -> bool:
        return self._change.wait_for_service(timeout_sec=timeout_s) and self._get.wait_for_service(
            timeout_sec=timeout_s
        )

    def state(self, timeout_s: float = 5.0) -> str:
        resp = call_blocking(self._get, GetState.Request(), timeout_s)
        return resp.current_state.label if resp is not None else 'unknown'

    def change(self, transition: str, timeout_s: float) -> bool:
        req = ChangeState.Request()
        req.transition.id = TRANSITIONS[transition]
        if transition == 'shutdown':
            # The shutdown transition id depends on the state it starts from.
            state = self.state(timeout_s)
            req.transition.id = {
                'inactive': Transition.TRANSITION_INACTIVE_SHUTDOWN,
                'active': Transition.TRANSITION_ACTIVE_SHUTDOWN,
            }.get(state, Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
        resp = call_blocking(self._change, req, timeout_s)
        return bool(resp is not None and resp.success)
