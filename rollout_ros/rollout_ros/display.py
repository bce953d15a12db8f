# SPDX-License-Identifier: Apache-2.0
"""`display_data`: what the policy saw and did, streamed to a Rerun viewer as
lerobot's `--display_data` does, but never on the control loop's time.

The loop only queues references; a display thread converts images and logs.
When the viewer or the network cannot keep up, ticks are dropped and counted:
a display may lose frames, the robot may not wait for it.
"""

import queue
import threading

DEFAULT_PORT = 9876


class RerunDisplay:
    def __init__(
        self, ip: str = '', port: int = DEFAULT_PORT, rrd_path: str = '', app_id: str = 'rollout_ros', backlog: int = 8
    ):
        import rerun as rr

        self._rr = rr
        self.stream = rr.RecordingStream(app_id)
        if rrd_path:
            self.stream.save(rrd_path)
        elif ip:
            self.stream.connect_grpc(f'rerun+http://{ip}:{port}/proxy')
        else:
            self.stream.spawn(port=port)
        self.logged = 0
        self.dropped = 0
        self._queue: queue.Queue = queue.Queue(maxsize=backlog)
        self._thread = threading.Thread(target=self._run, name='rerun-display', daemon=True)
        self._thread.start()

    def submit(self, stamp_s: float, state: dict, action: dict, images: dict) -> None:
        """From the loop: never blocks. `images` values are arrays or
        zero-argument callables that make one (converted on the display thread)."""
        try:
            self._queue.put_nowait((stamp_s, state, action, images))
        except queue.Full:
            self.dropped += 1

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5.0)
        self.stream.flush()
        self.stream.disconnect()

    def _run(self) -> None:
        rr, stream = self._rr, self.stream
        while (item := self._queue.get()) is not None:
            stamp_s, state, action, images = item
            stream.set_time('time', timestamp=stamp_s)
            for prefix, values in (('observation.state', state), ('action', action)):
                for name, value in values.items():
                    stream.log(f'{prefix}/{name}', rr.Scalars(float(value)))
            for cam, image in images.items():
                stream.log(f'observation.images.{cam}', rr.Image(image() if callable(image) else image))
            self.logged += 1
