# SPDX-License-Identifier: Apache-2.0
"""Spoken events for the operator (`play_sounds`), as lerobot's log_say does,
but never blocking the caller and silent where no speech tool exists."""

import shutil
import subprocess

SPEECH_TOOLS = (('spd-say', []), ('espeak-ng', []), ('espeak', []), ('say', []))


class Speaker:
    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self.tool = next(([path, *args] for name, args in SPEECH_TOOLS if (path := shutil.which(name))), None)
        self.spoken: list[str] = []  # what was said (or would have been), for tests and logs

    def say(self, text: str) -> None:
        if not self.enabled:
            return
        self.spoken.append(text)
        if self.tool is None:
            return
        try:
            subprocess.Popen(
                [*self.tool, text], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
            )
        except OSError:
            self.tool = None
