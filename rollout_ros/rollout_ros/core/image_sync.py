# SPDX-License-Identifier: Apache-2.0
"""Pairing recorded ticks with the camera frames their observation used.

A strategy tick names, per camera, the capture stamp of the frame it fed to
the policy; the recorder receives those frames on its own subscriptions, a
little earlier or later than the tick. `ImageSync` holds a short per-camera
history by capture stamp and releases ticks in arrival order once every
camera is resolved: the exact stamp, else (when that frame can no longer
come, or after a timeout) the nearest frame within a tolerance, else the
tick is reported as missing images, never released with a hole.

Plain Python, no ROS, no locks: one thread (the recorder's subscription
executor) calls every method.
"""

import bisect
from collections import deque
from dataclasses import dataclass, field


@dataclass
class SyncedTick:
    payload: object  # what the caller passed to add_tick
    images: dict = field(default_factory=dict)  # cam -> (stamp_ns, image)
    missing: list = field(default_factory=list)  # cams with no usable frame (then images is partial)


@dataclass
class _Pending:
    payload: object
    wanted: dict  # cam -> stamp_ns; None = the latest frame at or before tick_ns
    tick_ns: int
    deadline: float  # monotonic seconds
    images: dict = field(default_factory=dict)
    marker: bool = False  # a request (start/save): tick_ns is when it was made


class _History:
    """Frames of one camera, sorted by capture stamp."""

    def __init__(self):
        self.stamps: list[int] = []
        self.images: list = []

    def add(self, stamp_ns: int, image) -> None:
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            self.images[i] = image  # a re-sent frame: same capture, keep one
            return
        self.stamps.insert(i, stamp_ns)
        self.images.insert(i, image)

    def drop_before(self, stamp_ns: int) -> None:
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i:
            del self.stamps[:i]
            del self.images[:i]

    @property
    def newest(self) -> int | None:
        return self.stamps[-1] if self.stamps else None

    def exact(self, stamp_ns: int):
        i = bisect.bisect_left(self.stamps, stamp_ns)
        if i < len(self.stamps) and self.stamps[i] == stamp_ns:
            return stamp_ns, self.images[i]
        return None

    def nearest(self, stamp_ns: int, tolerance_ns: int):
        i = bisect.bisect_left(self.stamps, stamp_ns)
        best = None
        for j in (i - 1, i):
            if 0 <= j < len(self.stamps):
                d = abs(self.stamps[j] - stamp_ns)
                if d <= tolerance_ns and (best is None or d < best[0]):
                    best = (d, j)
        return None if best is None else (self.stamps[best[1]], self.images[best[1]])

    def latest_at_or_before(self, stamp_ns: int):
        i = bisect.bisect_right(self.stamps, stamp_ns)
        return (self.stamps[i - 1], self.images[i - 1]) if i else None


class ImageSync:
    def __init__(self, cameras, tolerance_ns: int, timeout_s: float, history_ns: int):
        """tolerance_ns: how far the nearest frame may be from the wanted stamp
        (half a period); timeout_s: how long a tick waits for a frame that is
        not there yet; history_ns: how far back frames are kept (a tick
        published later than that after its capture cannot be matched)."""
        self.cameras = list(cameras)
        self.tolerance_ns = int(tolerance_ns)
        self.timeout_s = float(timeout_s)
        self.history_ns = int(history_ns)
        self._hist = {cam: _History() for cam in self.cameras}
        self._pending: deque[_Pending] = deque()
        self._newest_tick_ns = -1
        self.nearest_matches = 0  # resolved to a neighbour, not the exact frame
        self.unstamped = 0  # ticks that named no stamp for some camera

    def __len__(self) -> int:
        return len(self._pending)

    def add_image(self, cam: str, stamp_ns: int, image, now: float) -> list[SyncedTick]:
        hist = self._hist.get(cam)
        if hist is None:
            return self.poll(now)
        hist.add(stamp_ns, image)
        # Nothing waits on frames older than this (a tick's frame is at most
        # history_ns old when the tick arrives).
        hist.drop_before(hist.newest - self.history_ns)
        return self.poll(now)

    def add_tick(self, payload, stamps: dict, tick_ns: int, now: float) -> list[SyncedTick]:
        wanted = {cam: stamps.get(cam) for cam in self.cameras}
        if any(v is None for v in wanted.values()):
            self.unstamped += 1
        # Before the first waiting request made after this tick was stamped.
        index = next((i for i, p in enumerate(self._pending) if p.marker and p.tick_ns >= tick_ns), len(self._pending))
        self._pending.insert(index, _Pending(payload, wanted, tick_ns, now + self.timeout_s))
        self._newest_tick_ns = max(self._newest_tick_ns, tick_ns)
        return self.poll(now)

    def add_marker(self, payload, stamp_ns: int, now: float, grace_s: float) -> list[SyncedTick]:
        """A request (start or save an episode) made at stamp_ns: it comes out
        after every tick stamped up to then. Ticks and requests travel apart,
        so a tick stamped earlier may still arrive after it; the request waits
        until a later-stamped tick shows that those are in (ticks come in
        stamp order), or grace_s when no tick follows (the strategy stopped)."""
        self._pending.append(_Pending(payload, {}, stamp_ns, now + grace_s, marker=True))
        return self.poll(now)

    def poll(self, now: float) -> list[SyncedTick]:
        """Ticks ready to go, oldest first; a tick still waiting holds back the later ones."""
        out = []
        while self._pending:
            p = self._pending[0]
            expired = now >= p.deadline
            if p.marker and not expired and self._newest_tick_ns <= p.tick_ns:
                break
            for cam, stamp in p.wanted.items():
                if cam not in p.images:
                    found = self._resolve(cam, stamp, p.tick_ns, expired)
                    if found is not None:
                        p.images[cam] = found  # False: decided, none
            if len(p.images) < len(p.wanted) and not expired:
                break
            self._pending.popleft()
            missing = [cam for cam in p.wanted if not p.images.get(cam)]
            images = {cam: v for cam, v in p.images.items() if v}
            self._release(images)
            out.append(SyncedTick(p.payload, images, missing))
        return out

    def flush(self) -> list[SyncedTick]:
        """Every waiting tick, resolved with what is there now (teardown)."""
        return self.poll(float('inf'))

    def _resolve(self, cam, stamp, tick_ns, expired):
        """(stamp_ns, image); False = decided that there is none; None = wait."""
        hist = self._hist[cam]
        if stamp is None:
            # The strategy did not say which frame it used: the latest it
            # could have had.
            return hist.latest_at_or_before(tick_ns) or False
        hit = hist.exact(stamp)
        if hit is not None:
            return hit
        newest = hist.newest
        # Frames of one camera arrive in capture order: once a later one is
        # here, the wanted one was lost on the way and will not come.
        if expired or (newest is not None and newest > stamp):
            hit = hist.nearest(stamp, self.tolerance_ns)
            if hit is not None:
                self.nearest_matches += 1
                return hit
            return False
        return None

    def _release(self, images: dict) -> None:
        # Later ticks use the same or later frames; keep the used one (the
        # next tick may reuse it) and the neighbour within tolerance.
        for cam, (stamp, _) in images.items():
            self._hist[cam].drop_before(stamp - self.tolerance_ns)
