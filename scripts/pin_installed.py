# SPDX-License-Identifier: Apache-2.0
"""Print `name==version` for every distribution pip installed in this venv.

`pip freeze` cannot be used as the lock: the ROS wheels carry the egg-info of
the ROS package they were built from (e.g. `action_msgs` inside
`ros-action-msgs`), which freeze lists as if it were a PyPI project of its own.
Only distributions with pip's INSTALLER record are real index packages.
"""

import json
import subprocess
import sys

report = json.loads(subprocess.run([sys.executable, '-m', 'pip', 'inspect'], check=True,
                                   capture_output=True, text=True).stdout)
pins = []
for dist in report['installed']:
    meta = dist['metadata']
    if (dist.get('installer') != 'pip' or meta['name'] in ('pip', 'rollout_ros')
            or dist.get('direct_url')):
        continue
    pins.append(f"{meta['name']}=={meta['version']}")
print('\n'.join(sorted(pins, key=str.lower)))
