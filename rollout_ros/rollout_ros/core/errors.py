# SPDX-License-Identifier: Apache-2.0
"""Configuration errors that name the offending parameter and the fix."""


class ConfigError(ValueError):
    """Bad user input, detected at configure time before anything moves."""

    def __init__(self, param: str, problem: str, fix: str = ''):
        self.param = param
        self.problem = problem
        self.fix = fix
        text = f'{param}: {problem}'
        if fix:
            text += f' Fix: {fix}'
        super().__init__(text)
