# SPDX-License-Identifier: Apache-2.0
"""A ROS 2 domain of its own for a test session or a demo on this host.

DDS discovery is per ROS_DOMAIN_ID: two programs on one domain see each
other's nodes and topics, on every host of the network unless discovery is
kept to this one (ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST). A domain id is
claimed with an advisory lock on a file in the temp folder, held until the
process exits (children inherit the environment, not the claim), so
concurrent test sessions and demos on one host never share a domain, and
none of them lands on a lab's robot domain. No rclpy here: it must run
before rclpy reads the environment.
"""

import fcntl
import os
import tempfile

# Domains whose DDS ports stay clear of the usual ones (0 is where robots
# live); the range the test suite always used.
FIRST, LAST = 100, 200
_claims: list[int] = []  # open lock files: the claim lasts as long as the process


def claim_private_domain(first: int = FIRST, last: int = LAST) -> int:
    """The lowest domain id in [first, last] no other process on this host holds."""
    for domain in range(first, last + 1):
        path = os.path.join(tempfile.gettempdir(), f'rollout_ros_domain_{domain}.lock')
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        except OSError:
            continue  # another user's lock file we cannot open: theirs
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue
        _claims.append(fd)
        return domain
    raise RuntimeError(f'every ROS domain id in {first}..{last} is in use on this host; set ROS_DOMAIN_ID yourself')


def isolate(env=None, keep_domain: bool = False) -> int:
    """Put this process (and the children it starts) on a private domain with
    localhost-only discovery; with `keep_domain`, an already set
    ROS_DOMAIN_ID is kept. Returns the domain id."""
    env = os.environ if env is None else env
    if not (keep_domain and env.get('ROS_DOMAIN_ID', '').strip()):
        env['ROS_DOMAIN_ID'] = str(claim_private_domain())
    env.setdefault('ROS_AUTOMATIC_DISCOVERY_RANGE', 'LOCALHOST')
    return int(env['ROS_DOMAIN_ID'])
