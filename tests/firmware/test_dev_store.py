# dev.store: atomic replace and fallback after a cut at each step
# (the cut at every flash write on LittleFS is in test_dev_powercut.py).
import os
from dev import store



def test_write_replaces_and_keeps_previous_as_bak():
    store.save_json("a/b/c.json", {"v": 1})
    store.save_json("a/b/c.json", {"v": 2})
    assert store.load_json("a/b/c.json") == {"v": 2}
    assert store.load_json("a/b/c.json.bak") == {"v": 1}
    assert not store.exists("a/b/c.json.tmp")
    assert store.read("a/b/c.json") == b'{"v": 2}'


def test_missing_file_gives_default():
    assert store.load_json("nope.json", {"d": 1}) == {"d": 1}
    assert store.read("nope.bin") is None


def test_corrupt_file_falls_back_to_last_good():
    store.save_json("c.json", {"v": 1})
    store.save_json("c.json", {"v": 2})
    with open("c.json", "w") as f:
        f.write('{"v": ')  # torn by something that did not use store.write
    assert store.load_json("c.json") == {"v": 1}


def test_cut_during_tmp_write_keeps_old():
    store.save_json("c.json", {"v": "old"})
    with open("c.json.tmp", "w") as f:
        f.write('{"v": "ne')  # the cut hit while the tmp file was being written
    assert store.load_json("c.json") == {"v": "old"}
    store.save_json("c.json", {"v": "new"})  # the next write simply overwrites the tmp
    assert store.load_json("c.json") == {"v": "new"}


def test_cut_between_the_two_renames_keeps_old():
    store.save_json("c.json", {"v": "old"})
    with open("c.json.tmp", "w") as f:
        f.write('{"v": "new"}')
    os.rename("c.json", "c.json.bak")  # first rename done, then the power went
    assert store.load_json("c.json") == {"v": "old"}
    assert store.read("c.json") == b'{"v": "old"}'
