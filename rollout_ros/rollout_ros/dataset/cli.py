# SPDX-License-Identifier: Apache-2.0
"""rollout_dataset: inspect and repair LeRobot v3 datasets on disk.

rollout_dataset info <root> [--json]   summary of a dataset
rollout_dataset repair <root>          fix what a crash left (ours or LeRobot's)
rollout_dataset push <root> [--repo_id <id>]   upload what a failed push of a run left local
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import pyarrow.parquet as pq

from .layout import INFO_PATH, PRIVATE_DIR, STAGING_DIR, DatasetBusyError
from .records import episode_files


def summary(root: Path) -> dict:
    """What is in a dataset, and whether it looks like it needs `repair`."""
    from lerobot.datasets.io_utils import load_info

    info = load_info(root)
    out = {
        'root': str(root),
        'codebase_version': info.codebase_version,
        'robot_type': info.robot_type,
        'fps': info.fps,
        'episodes': info.total_episodes,
        'frames': info.total_frames,
        'tasks': info.total_tasks,
        'seconds': round(info.total_frames / info.fps, 2),
        'features': {k: {'dtype': ft['dtype'], 'shape': list(ft['shape'])} for k, ft in info.features.items()},
        'cameras': {
            k: (ft.get('info') or {}).get('video.codec') for k, ft in info.features.items() if ft['dtype'] == 'video'
        },
        'bytes': sum(
            p.stat().st_size
            for p in root.rglob('*')
            if p.is_file() and not p.relative_to(root).as_posix().startswith(PRIVATE_DIR + '/')
        ),
        'needs_repair': [],
    }
    lengths = []
    for path in episode_files(root):
        try:
            lengths += pq.read_table(path, columns=['length']).column('length').to_pylist()
        except Exception as exc:  # noqa: BLE001 - reported, not fatal
            out['needs_repair'].append(f'{path.relative_to(root)} unreadable ({exc.__class__.__name__})')
    if lengths:
        out['episode_seconds'] = {'min': min(lengths) / info.fps, 'max': max(lengths) / info.fps}
    if len(lengths) != info.total_episodes:
        out['needs_repair'].append(f'{INFO_PATH} counts {info.total_episodes} episodes, metadata holds {len(lengths)}')
    staging = root / STAGING_DIR
    if staging.is_dir() and any(staging.iterdir()):
        out['needs_repair'].append('unfinished files in staging (a writer crashed, or is still recording)')
    for p in (root / 'data').glob('*/*.parquet'):
        try:
            pq.read_metadata(p)
        except Exception:  # noqa: BLE001
            out['needs_repair'].append(f'{p.relative_to(root)} has no parquet footer')
    return out


def _print_summary(s: dict) -> None:
    print(f'{s["root"]}: LeRobot {s["codebase_version"]}, robot {s["robot_type"]}, {s["fps"]} fps')
    print(
        f'  {s["episodes"]} episodes, {s["frames"]} frames ({s["seconds"]} s), {s["tasks"]} tasks, '
        f'{s["bytes"] / 1e6:.1f} MB'
    )
    if 'episode_seconds' in s:
        print(f'  episode length {s["episode_seconds"]["min"]:.1f}..{s["episode_seconds"]["max"]:.1f} s')
    for key, codec in s['cameras'].items():
        shape = s['features'][key]['shape']
        print(f'  camera {key}: {shape[1]}x{shape[0]} {codec or "(no episode yet)"}')
    others = [k for k, ft in s['features'].items() if ft['dtype'] != 'video']
    print(f'  columns: {", ".join(others)}')
    for line in s['needs_repair']:
        print(f'  NEEDS REPAIR: {line}')


def push(root: Path, repo_id: str, private: bool, timeout_s: float) -> int:
    """One push with the recorder's uploader (its retries, its ignore rules); 0 once it is on the Hub."""
    from .hub import HubUploader

    uploader = HubUploader(root, repo_id, private=private)
    uploader.request_push('rollout_dataset push')
    finished = uploader.close(final_push=False, timeout_s=timeout_s)
    status = uploader.status()
    if finished and status['state'] == 'idle' and status['pushes_done']:
        print(f'pushed {root} to {repo_id}')
        return 0
    why = status['last_error'] or f'not finished in {timeout_s:g} s'
    print(f'rollout_dataset push: {repo_id}: {why}', file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='rollout_dataset', description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest='command', required=True)
    p_info = sub.add_parser('info', help='summary of a dataset')
    p_info.add_argument('root', type=Path)
    p_info.add_argument('--json', action='store_true', help='print the summary as one JSON object')
    p_repair = sub.add_parser('repair', help='fix what a crash left; never deletes a finished episode')
    p_repair.add_argument('root', type=Path)
    p_push = sub.add_parser(
        'push',
        help='upload a dataset to the Hub (what a failed or cut-short push of a '
        'run left behind); the local copy is never changed',
    )
    p_push.add_argument('root', type=Path)
    p_push.add_argument('--repo_id', default='', help="Hub id; '' = <parent folder>/<folder> of root")
    p_push.add_argument('--private', action='store_true')
    p_push.add_argument('--timeout_s', type=float, default=600.0, help='give up after this long, retries included')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format='%(levelname)s %(name)s: %(message)s')
    # lerobot warns at length when torchcodec cannot load; we decode with PyAV.
    logging.getLogger('lerobot.utils.import_utils').setLevel(logging.ERROR)

    if not (args.root / INFO_PATH).is_file():
        print(f'{args.root}: no {INFO_PATH}, not a LeRobot v3 dataset', file=sys.stderr)
        return 2
    if args.command == 'info':
        s = summary(args.root)
        if args.json:
            print(json.dumps(s))
        else:
            _print_summary(s)
        return 0
    if args.command == 'push':
        return push(
            args.root,
            args.repo_id or f'{args.root.resolve().parent.name}/{args.root.resolve().name}',
            args.private,
            args.timeout_s,
        )
    from .repair import repair

    try:
        report = repair(args.root)
    except DatasetBusyError as exc:
        print(exc, file=sys.stderr)
        return 3
    print(report.text())
    return 1 if report.problems else 0


if __name__ == '__main__':
    sys.exit(main())
