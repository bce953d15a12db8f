# SPDX-License-Identifier: Apache-2.0
"""rosbag2 directories written with the pure-Python `rosbags` library.

rosbag2_py is not on PyPI, and a recorder that records what the robot saw
should not need a full ROS install to do it. The caller serializes with
rclpy (rclpy.serialization.serialize_message gives CDR with its
encapsulation header, which is what a rosbag2 message holds); this module
only frames the bytes, so it imports no rclpy.

Defaults follow what Jazzy and Kilted `ros2 bag record` write and what their
`ros2 bag info/play` read: MCAP storage (the default since Iron) and
metadata version 9 (structured QoS, since Jazzy).
"""

import sys
import threading
from pathlib import Path

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import CompressionFormat, CompressionMode, StoragePlugin
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.base import Nodetype

STORAGES = {'mcap': StoragePlugin.MCAP, 'sqlite3': StoragePlugin.SQLITE3}
# zstd in every mode: 'storage' is MCAP chunk compression (what ros2 bag's
# zstd_fast/zstd_small presets give), 'message' and 'file' are rosbag2's own.
COMPRESSIONS = {'storage': CompressionMode.STORAGE, 'message': CompressionMode.MESSAGE, 'file': CompressionMode.FILE}

_DEFAULT_TIME = QosTime(0, 0)  # rmw's "unspecified": no deadline, infinite lifespan


def _qos(reliability: QosReliability, durability: QosDurability, depth: int) -> Qos:
    return Qos(
        QosHistory.KEEP_LAST,
        depth,
        reliability,
        durability,
        _DEFAULT_TIME,
        _DEFAULT_TIME,
        QosLiveliness.AUTOMATIC,
        _DEFAULT_TIME,
        False,
    )


# The offered QoS that `ros2 bag play` republishes with; the depths are
# rclpy's for the same-named profiles.
QOS_PROFILES = {
    'reliable': _qos(QosReliability.RELIABLE, QosDurability.VOLATILE, 10),
    'sensor_data': _qos(QosReliability.BEST_EFFORT, QosDurability.VOLATILE, 5),
    'transient_local': _qos(QosReliability.RELIABLE, QosDurability.TRANSIENT_LOCAL, 1),
}


def _split_msgtype(msgtype: str) -> tuple[str, str]:
    parts = msgtype.split('/')
    if len(parts) == 2:
        parts.insert(1, 'msg')
    if len(parts) != 3 or parts[1] != 'msg' or not all(parts):
        raise ValueError(f'{msgtype!r} is not a message type name like "sensor_msgs/msg/Image"')
    return parts[0], parts[2]


def package_share_dir(package: str) -> Path:
    """The package's share dir from the ament index, or the running
    Python's prefix when there is no index (a pip/venv install without a
    sourced ROS environment, where the wheels put share/ under the prefix)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory(package))
    except (ImportError, LookupError, OSError, ValueError):
        return Path(sys.prefix) / 'share' / package


def read_msgdef(msgtype: str) -> str:
    """The .msg text of an installed message type, e.g.
    'rollout_ros_interfaces/msg/RolloutFrame'."""
    package, name = _split_msgtype(msgtype)
    path = package_share_dir(package) / 'msg' / f'{name}.msg'
    if not path.is_file():
        raise FileNotFoundError(
            f'no definition of {msgtype} at {path}: is {package} built and installed '
            'in this environment (or its setup file sourced)?'
        )
    return path.read_text()


def _referenced_types(desc) -> list[str]:
    kind, arg = desc
    if kind == Nodetype.NAME:
        return [arg]
    if kind in (Nodetype.ARRAY, Nodetype.SEQUENCE):
        return _referenced_types(arg[0])
    return []


class BagWriter:
    """One bag directory; usable from several subscriber threads at once."""

    def __init__(self, path, storage: str = 'mcap', compression: str | None = None, distro: Stores = Stores.ROS2_JAZZY):
        if storage not in STORAGES:
            raise ValueError(f'storage must be one of {sorted(STORAGES)}, got {storage!r}')
        if compression is not None and compression not in COMPRESSIONS:
            raise ValueError(f'compression must be None or one of {sorted(COMPRESSIONS)}, got {compression!r}')
        if compression == 'storage' and storage != 'mcap':
            raise ValueError("compression='storage' is MCAP chunk compression; use 'message' or 'file' with sqlite3")
        self.path = Path(path)
        self.typestore = get_typestore(distro)
        self._writer = Writer(self.path, version=Writer.VERSION_LATEST, storage_plugin=STORAGES[storage])
        if compression is not None:
            self._writer.set_compression(COMPRESSIONS[compression], CompressionFormat.ZSTD)
        self._connections = {}
        self._lock = threading.Lock()
        self._writer.open()
        self._open = True

    def _ensure_type(self, msgtype: str, msgdef: str | None) -> None:
        """Registers a type the typestore lacks (ours, or any installed
        one), and the types it refers to, so the bag carries the full
        definition that ros2 bag play needs to publish it."""
        pending = [(msgtype, msgdef)]
        while pending:
            name, text = pending.pop()
            if name in self.typestore.fielddefs:
                continue
            types = get_types_from_msg(text if text is not None else read_msgdef(name), name)
            self.typestore.register(types)
            for _, fields in types.values():
                pending += [(ref, None) for _, desc in fields for ref in _referenced_types(desc)]

    def add_topic(self, name: str, msgtype: str, msgdef: str | None = None, qos: str | None = None) -> None:
        """msgdef: .msg text for a type that is neither in the typestore nor
        installed; qos: one of QOS_PROFILES, or None to offer none (play then
        uses its default)."""
        if qos is not None and qos not in QOS_PROFILES:
            raise ValueError(f'qos must be None or one of {sorted(QOS_PROFILES)}, got {qos!r}')
        profiles = [QOS_PROFILES[qos]] if qos else []
        with self._lock:
            self._check_open()
            if name in self._connections:
                raise ValueError(f'topic {name} was already added')
            self._ensure_type(msgtype, msgdef)
            self._connections[name] = self._writer.add_connection(
                name, msgtype, typestore=self.typestore, offered_qos_profiles=profiles
            )

    def write(self, topic: str, timestamp_ns: int, cdr_bytes: bytes) -> None:
        with self._lock:
            self._check_open()
            connection = self._connections.get(topic)
            if connection is None:
                raise KeyError(f'topic {topic} was not added to {self.path}')
            self._writer.write(connection, int(timestamp_ns), cdr_bytes)

    def _check_open(self) -> None:
        if not self._open:
            raise RuntimeError(f'bag {self.path} is closed')

    def close(self) -> None:
        """Writes the index and metadata.yaml; a bag without them is only
        readable after `ros2 bag reindex`. Idempotent."""
        with self._lock:
            if self._open:
                self._open = False
                self._writer.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
