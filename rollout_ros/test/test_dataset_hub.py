# SPDX-License-Identifier: Apache-2.0
"""HubUploader against a local stand-in for the Hub's HTTP API, driven by the
real huggingface_hub client: finalized files arrive intact and temp files do
not, requests collapse, failed commits are retried, the token stays out of
logs and status, and the local dataset is never touched."""

import base64
import hashlib
import json
import logging
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlparse

import pytest
import yaml

from rollout_ros.core.errors import ConfigError
from rollout_ros.dataset.hub import HubUploader, check_repo_id, stamp_repo_id
from rollout_ros.dataset.layout import PRIVATE_DIR

TOKEN = 'hf_FAKEsecretTOKEN0123456789'
REPO = 'tester/rollout_demo'
INFO = {
    'codebase_version': 'v3.0',
    'fps': 30,
    'robot_type': 'koch_follower',
    'total_episodes': 1,
    'total_frames': 90,
    'total_tasks': 1,
    'features': {'action': {'dtype': 'float32', 'shape': [6], 'names': None}},
}
FINALIZED = {
    'meta/info.json': json.dumps(INFO).encode(),
    'meta/tasks.parquet': b'PAR1 tasks',
    'data/chunk-000/file-000.parquet': b'PAR1' + bytes(range(256)) * 40,
    'videos/observation.images.front/chunk-000/file-000.mp4': b'\x00\x00\x00\x18ftypmp42' * 500,
}
UNFINISHED = {
    'data/chunk-000/file-001.parquet.tmp': b'half a parquet',
    'videos/observation.images.front/chunk-000/file-001.mp4.partial': b'half a video',
    'images/observation.images.front/episode-000001/frame-000000.png': b'\x89PNG staging',
    'meta/episodes/chunk-000/.file-000.parquet.lock': b'',
    PRIVATE_DIR + '/lock': b'pid 1234',
    PRIVATE_DIR + '/staging/file-002.parquet.1234.tmp': b'being written',
    PRIVATE_DIR + '/orphans/file-009.mp4': b'left by a crash',
}


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b'blob %d\0' % len(content) + content).hexdigest()


class FakeHub:
    """Just the endpoints HfApi calls for create_repo, upload_folder,
    upload_file, delete_tag and create_tag (found by logging its requests:
    anything else lands in `unhandled`). Preupload answers 'regular' so no
    LFS or Xet transfer is involved, and returns the stored blob's oid like
    the Hub does, so unchanged files are not sent again."""

    def __init__(self):
        self.repos = {}
        self.requests = []
        self.unhandled = []
        self.auth_headers = set()
        self.commits = []  # (repo, message, {path: bytes})
        self.fail_commits = 0
        self.commit_failures = 0
        self.commit_started = threading.Event()
        self.commit_gate = threading.Event()
        self.commit_gate.set()
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(('127.0.0.1', 0), self._handler())
        self.endpoint = f'http://127.0.0.1:{self.server.server_address[1]}'
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.commit_gate.set()
        self.server.shutdown()
        self.server.server_close()

    def files(self, repo=REPO):
        return self.repos[repo]['files']

    def _handler(self):
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def _reply(self, status, body=None, headers=None):
                data = json.dumps(body if body is not None else {}).encode()
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def _serve(self):
                length = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(length) if length else b''
                path = unquote(urlparse(self.path).path)
                with hub.lock:
                    hub.requests.append((self.command, path))
                    if self.headers.get('authorization'):
                        hub.auth_headers.add(self.headers['authorization'])
                status, reply, headers = hub.route(self.command, path, body, self.headers)
                self._reply(status, reply, headers)

            do_GET = do_POST = do_DELETE = do_PUT = _serve

        return Handler

    def route(self, method, path, body, headers):
        parts = path.strip('/').split('/')
        if method == 'POST' and path == '/api/repos/create':
            payload = json.loads(body)
            repo = f'{payload["organization"] or "tester"}/{payload["name"]}'
            with self.lock:
                if repo in self.repos:
                    return (
                        409,
                        {'error': 'You already created this dataset repo', 'url': f'{self.endpoint}/datasets/{repo}'},
                        None,
                    )
                self.repos[repo] = {'files': {}, 'tags': {}, 'head': '0' * 40, 'visibility': payload.get('visibility')}
            return 200, {'url': f'{self.endpoint}/datasets/{repo}'}, None
        if method == 'POST' and path == '/api/validate-yaml':
            front = json.loads(body)['content'].split('---')[1]
            yaml.safe_load(front)
            return 200, {'errors': [], 'warnings': []}, None
        if len(parts) >= 6 and parts[:2] == ['api', 'datasets']:
            repo, action, arg = '/'.join(parts[2:4]), parts[4], '/'.join(parts[5:])
            if repo not in self.repos:
                return 404, {'error': 'Repository not found'}, {'X-Error-Code': 'RepoNotFound'}
            state = self.repos[repo]
            if method == 'POST' and action == 'preupload':
                files = [
                    {
                        'path': f['path'],
                        'uploadMode': 'regular',
                        'shouldIgnore': False,
                        'oid': git_blob_sha1(state['files'][f['path']]) if f['path'] in state['files'] else None,
                    }
                    for f in json.loads(body)['files']
                ]
                return 200, {'files': files}, None
            if method == 'POST' and action == 'commit':
                return self._commit(repo, state, body, headers)
            if method == 'DELETE' and action == 'tag':
                with self.lock:
                    if state['tags'].pop(arg, None) is None:
                        return 404, {'error': 'Invalid rev id'}, {'X-Error-Code': 'RevisionNotFound'}
                return 200, {}, None
            if method == 'POST' and action == 'tag':
                tag = json.loads(body)['tag']
                with self.lock:
                    if tag in state['tags']:
                        return 409, {'error': 'Tag already exists'}, None
                    state['tags'][tag] = state['head']
                return 200, {}, None
            if method == 'GET' and action == 'revision':
                return 200, {'id': repo, 'sha': state['head'], 'private': False}, None
        self.unhandled.append((method, path))
        return 404, {'error': f'stand-in does not serve {method} {path}'}, None

    def _commit(self, repo, state, body, headers):
        self.commit_started.set()
        assert self.commit_gate.wait(30)
        with self.lock:
            if self.commit_failures < self.fail_commits:
                self.commit_failures += 1
                # 412 (a concurrent commit moved the branch) is not among the
                # statuses the client retries by itself, so it reaches
                # HubUploader. The server echoes credentials: whatever ends up
                # in the client's exception text must still not reach logs or status.
                return 412, {'error': f'A commit has happened since (auth {headers.get("authorization")})'}, None
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
            header = next(x['value'] for x in lines if x['key'] == 'header')
            added = {x['value']['path']: base64.b64decode(x['value']['content']) for x in lines if x['key'] == 'file'}
            assert not [x for x in lines if x['key'] not in ('header', 'file')], 'only regular files expected'
            state['files'].update(added)
            state['head'] = hashlib.sha1(repr((state['head'], sorted(added))).encode()).hexdigest()
            self.commits.append((repo, header['summary'], added))
            return (
                200,
                {
                    'commitUrl': f'{self.endpoint}/datasets/{repo}/commit/{state["head"]}',
                    'commitOid': state['head'],
                    'pullRequestUrl': None,
                },
                None,
            )


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants

    # conftest keeps the Hub offline for the whole suite; only this client,
    # aimed at the local stand-in, is let through.
    monkeypatch.setattr(huggingface_hub.constants, 'HF_HUB_OFFLINE', False)
    server = FakeHub()
    yield server
    server.close()


@pytest.fixture
def uploader(hub, tmp_path):
    made = []

    def make(root, **kwargs):
        kwargs = {'token': TOKEN, 'endpoint': hub.endpoint, 'retry_backoff_s': 0.05, **kwargs}
        made.append(HubUploader(root, REPO, **kwargs))
        return made[-1]

    yield make
    for u in made:
        u.close(final_push=False, timeout_s=30)


def write_tree(root, files):
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)


def snapshot(root):
    return {
        str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(root.rglob('*')) if p.is_file()
    }


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / 'rollout_demo'
    write_tree(root, {**FINALIZED, **UNFINISHED})
    return root


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError('timed out')


def folder_commits(hub):
    return [c for c in hub.commits if c[1].startswith('rollout_ros push')]


def test_push_uploads_finalized_files_card_and_tag(hub, uploader, dataset):
    before = snapshot(dataset)
    up = uploader(dataset, private=True, tags=['koch'])
    t0 = time.monotonic()
    assert up.request_push('episode 0') is True
    assert time.monotonic() - t0 < 0.5  # queued, not uploaded, on the caller's thread
    wait_for(lambda: up.status()['pushes_done'] == 1)

    files = hub.files()
    assert {k: v for k, v in files.items() if k != 'README.md'} == FINALIZED
    assert not set(files) & set(UNFINISHED)
    card = files['README.md'].decode()
    front = yaml.safe_load(card.split('---')[1])
    assert {'LeRobot', 'koch'} <= set(front['tags']) and front['task_categories'] == ['robotics']
    assert '"robot_type": "koch_follower"' in card  # LeRobot's card embeds info.json
    assert hub.repos[REPO]['tags'] == {'v3.0': hub.repos[REPO]['head']}
    assert hub.repos[REPO]['visibility'] == 'private'
    assert hub.auth_headers == {f'Bearer {TOKEN}'}
    assert hub.unhandled == []
    status = up.status()
    assert status['state'] == 'idle' and status['last_error'] is None and status['pending'] is False
    assert status['last_push_s'] > 0
    assert snapshot(dataset) == before

    # A second push re-creates the tag on the new head and resends nothing unchanged.
    up.request_push('again')
    wait_for(lambda: up.status()['pushes_done'] == 2)
    assert len(folder_commits(hub)) == 1
    assert hub.repos[REPO]['tags'] == {'v3.0': hub.repos[REPO]['head']}
    assert hub.unhandled == []
    assert snapshot(dataset) == before


def test_requests_during_a_push_collapse_into_one(hub, uploader, dataset):
    hub.commit_gate.clear()
    up = uploader(dataset)
    assert up.request_push('episode 0')
    assert hub.commit_started.wait(60)  # push 1 is inside its commit
    # Episode 1 lands meanwhile, renamed into place, then info.json (last).
    new_video = 'videos/observation.images.front/chunk-000/file-001.mp4'
    write_tree(dataset, {new_video + '.partial': b'episode 1 video'})
    (dataset / (new_video + '.partial')).rename(dataset / new_video)
    info = {**INFO, 'total_episodes': 2}
    write_tree(dataset, {'meta/info.json': json.dumps(info).encode()})
    assert [up.request_push(f'episode {i}') for i in range(1, 6)] == [True, False, False, False, False]
    assert up.status()['pending'] is True and up.status()['state'] == 'uploading'
    hub.commit_gate.set()

    wait_for(lambda: up.status()['pushes_done'] == 2 and up.status()['state'] == 'idle')
    time.sleep(0.2)
    assert up.status()['pushes_done'] == 2
    commits = folder_commits(hub)
    assert len(commits) == 2
    assert 'episode 1, episode 2' in commits[1][1]
    # Only what changed goes up the second time.
    assert commits[1][2] == {new_video: b'episode 1 video', 'meta/info.json': json.dumps(info).encode()}
    assert hub.files()[new_video] == b'episode 1 video'


def test_failed_commits_are_retried_and_the_token_stays_out(hub, uploader, dataset, caplog):
    caplog.set_level(logging.DEBUG)
    before = snapshot(dataset)
    hub.fail_commits = 2
    up = uploader(dataset, max_retries=3)
    up.request_push('episode 0')
    wait_for(lambda: up.status()['pushes_done'] == 1)

    assert hub.commit_failures == 2
    retries = [r for r in caplog.records if 'retrying' in r.getMessage()]
    assert len(retries) == 2 and '412' in retries[0].getMessage()
    assert {k: v for k, v in hub.files().items() if k != 'README.md'} == FINALIZED
    assert up.status()['state'] == 'idle' and up.status()['last_error'] is None
    assert TOKEN not in caplog.text
    assert TOKEN not in repr(up.status())
    assert snapshot(dataset) == before


def test_a_push_that_keeps_failing_is_reported(hub, uploader, dataset, caplog):
    caplog.set_level(logging.DEBUG)
    before = snapshot(dataset)
    hub.fail_commits = 100
    up = uploader(dataset, max_retries=2)
    up.request_push('episode 0')
    wait_for(lambda: up.status()['state'] == 'failed')

    status = up.status()
    assert hub.commit_failures == 3
    assert status['pushes_done'] == 0 and status['failures'] == 1
    assert '412' in status['last_error'] and 'A commit has happened' in status['last_error']
    assert '***' in status['last_error']  # the echoed credential, masked
    assert TOKEN not in repr(status) and TOKEN not in caplog.text
    assert any(r.levelno == logging.ERROR and 'after 3 attempt' in r.getMessage() for r in caplog.records)
    assert snapshot(dataset) == before
    # The next request tries again from scratch.
    hub.fail_commits = 0
    up.request_push('retry by hand')
    wait_for(lambda: up.status()['pushes_done'] == 1)
    assert up.status()['state'] == 'idle'


def test_close_does_the_final_push_and_then_refuses(hub, uploader, dataset):
    up = uploader(dataset)
    assert up.close(final_push=True, timeout_s=60) is True
    assert up.status()['pushes_done'] == 1
    assert 'final' in folder_commits(hub)[0][1]
    assert up.request_push('late') is False


def test_nothing_is_pushed_before_the_first_episode(hub, uploader, tmp_path):
    root = tmp_path / 'empty'
    write_tree(root, {'data/chunk-000/file-000.parquet.tmp': b'x'})
    up = uploader(root)
    assert up.close(final_push=True, timeout_s=30) is True
    assert hub.requests == [] and up.status()['pushes_done'] == 0 and up.status()['state'] == 'idle'


def test_repo_id_prefix_and_stamp():
    assert stamp_repo_id('me/rollout_x', datetime(2026, 3, 4, 5, 6, 7)) == 'me/rollout_x_20260304_050607'
    assert check_repo_id('me/rollout_x') == 'me/rollout_x'
    with pytest.raises(ConfigError, match="must start with 'rollout_'") as e:
        check_repo_id('me/koch_demo')
    assert e.value.param == 'dataset.repo_id' and "'me/rollout_koch_demo'" in e.value.fix
    with pytest.raises(ConfigError, match='not a valid Hub repo id'):
        check_repo_id('me/rollout_bad name')
