# SPDX-License-Identifier: Apache-2.0
"""Install an editable ament_python package where the ROS 2 tools look for it.

`pip install -e` makes the package importable but leaves no trace ROS can
find. This adds, under PREFIX, what `colcon build --symlink-install` of the
package would: the ament index marker, share/<pkg>/ (package.xml, launch and
config files from setup.py's data_files, as links to the source, so edits
apply at once) and lib/<pkg>/<executable> for each console script (links to
the venv's scripts that pip made). `ros2 pkg prefix`, `ros2 launch` and
`ros2 run` then find it once AMENT_PREFIX_PATH names PREFIX.

Usage: python install_ros_layout.py <package source dir> <prefix>
"""

import os
import runpy
import shutil
import sys
from pathlib import Path


def setup_kwargs(source: Path) -> dict:
    """setup.py's arguments, without running setuptools."""
    import setuptools
    captured = {}
    real_setup, cwd = setuptools.setup, os.getcwd()
    setuptools.setup = lambda **kw: captured.update(kw)
    try:
        os.chdir(source)   # setup.py globs relative to its own folder
        runpy.run_path('setup.py')
    finally:
        setuptools.setup = real_setup
        os.chdir(cwd)
    return captured


def link(target: Path, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        path.unlink()
    path.symlink_to(target)


def install(source: Path, prefix: Path) -> list[Path]:
    kw = setup_kwargs(source)
    name = kw['name']
    # Whatever an earlier layout left (a file removed from data_files, a renamed script) goes.
    for stale in (prefix / 'share' / name, prefix / 'lib' / name):
        shutil.rmtree(stale, ignore_errors=True)
    made = []
    for dest, files in kw.get('data_files', []):
        for f in files:
            made.append(prefix / dest / Path(f).name)
            link((source / f).resolve(), made[-1])
    bin_dir = Path(sys.executable).parent
    for entry in kw.get('entry_points', {}).get('console_scripts', []):
        script = entry.split('=')[0].strip()
        if not (bin_dir / script).is_file():
            raise SystemExit(f'[setup] error: {bin_dir / script} is missing: install {name} with pip -e first')
        made.append(prefix / 'lib' / name / script)
        link(bin_dir / script, made[-1])
    marker = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / name
    if not marker.is_file():
        raise SystemExit(f'[setup] error: {name} data_files lack the ament index marker {marker}')
    return made


if __name__ == '__main__':
    install(Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve())
