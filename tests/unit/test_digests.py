"""Input digests kept between runs by the files' stat (proxpipe.base.digests)."""

import hashlib
import json
import os

from proxpipe.base import digests
from proxpipe.base.digests import DigestCache


def _settled(path, seconds=5):
    """Make the file look as if it had not changed for a while (its digest is then kept)."""
    past = os.stat(path).st_mtime_ns - seconds * 10**9
    os.utime(path, ns=(past, past))


def test_an_unchanged_file_is_not_read_again_and_a_changed_one_is(tmp_path, monkeypatch):
    (tmp_path / "cache").mkdir()
    source = tmp_path / "main.tf"
    source.write_text("one")
    _settled(source)
    monkeypatch.setattr(digests, "_SETTLED", 0.0)  # ctime is now: accept it
    first = DigestCache(tmp_path / "cache" / "digests.json")
    assert first.sha256(source) == hashlib.sha256(b"one").hexdigest()
    first.save()

    read = []
    monkeypatch.setattr(digests, "sha256_file", lambda path: read.append(path) or "read")
    again = DigestCache(tmp_path / "cache" / "digests.json")
    assert again.sha256(source) == hashlib.sha256(b"one").hexdigest() and read == []

    before = os.stat(source).st_mtime_ns
    source.write_text("two")  # same size, and the same mtime set back as rsync -t would: ctime still tells
    os.utime(source, ns=(before, before))
    assert DigestCache(tmp_path / "cache" / "digests.json").sha256(source) == "read"


def test_a_file_written_just_now_is_hashed_but_not_kept(tmp_path):
    (tmp_path / "cache").mkdir()
    source = tmp_path / "site.yml"
    source.write_text("- hosts: all\n")
    cache = DigestCache(tmp_path / "cache" / "digests.json")
    assert cache.sha256(source) == hashlib.sha256(b"- hosts: all\n").hexdigest()
    cache.save()
    assert not (tmp_path / "cache" / "digests.json").exists()  # nothing settled to keep


def test_a_damaged_cache_is_ignored_and_no_state_directory_is_made(tmp_path, monkeypatch):
    monkeypatch.setattr(digests, "_SETTLED", 0.0)
    source = tmp_path / "a"
    source.write_text("a")
    (tmp_path / "state" / "cache").mkdir(parents=True)
    (tmp_path / "state" / "cache" / "d.json").write_text("{not json")
    damaged = DigestCache(tmp_path / "state" / "cache" / "d.json")
    assert damaged.sha256(source) == hashlib.sha256(b"a").hexdigest()
    damaged.save()
    assert list(json.loads((tmp_path / "state" / "cache" / "d.json").read_text())) == [str(source)]
    nowhere = DigestCache(tmp_path / "missing" / "cache" / "d.json")
    nowhere.sha256(source)
    nowhere.save()
    assert not (tmp_path / "missing").exists()
