"""eclor build: reproducible LittleFS image + mip package, checked by mounting
the image in the real unix MicroPython (its own littlefs, as on the ESP32)."""
import hashlib
import json
import os
import stat

import pytest

from eclor.tools import build, cli, mpy

MOUNT = r"""
import vfs, os, sys
class Dev:
    def __init__(s, f): s.f = f; f.seek(0, 2); s.n = f.tell() // 4096
    def readblocks(s, b, buf, off=0): s.f.seek(b * 4096 + off); s.f.readinto(buf)
    def writeblocks(s, b, buf, off=0): raise OSError(30)
    def ioctl(s, op, arg): return {4: s.n, 5: 4096}.get(op, 0)
fs = vfs.VfsLfs2(Dev(open(sys.argv[1], 'rb')))
vfs.mount(fs, '/img', readonly=True)
def walk(d):
    for name, typ, *_ in os.ilistdir(d):
        p = d + '/' + name
        if typ == 0x4000: walk(p)
        else: print('F', p[5:], os.stat(p)[6])
walk('/img')
import json
print('CFG', json.dumps(json.load(open('/img/config.json'))) if 'config.json' in os.listdir('/img') else '-')
"""


def _mount_list(tmp_path, img):
    script = tmp_path / "mount.py"
    script.write_text(MOUNT)
    r = mpy.run([str(script), str(img)], path_dirs=[], timeout=30)
    assert r.returncode == 0, r.stderr + r.stdout
    files = {}
    cfg = None
    for line in r.stdout.splitlines():
        if line.startswith("F "):
            _, p, size = line.split(" ")
            files[p] = int(size)
        elif line.startswith("CFG "):
            cfg = line[4:]
    return files, cfg


def _provisioned(tmp_path, ep="bin-thil-0007", role="bin"):
    devices = tmp_path / "devices"
    psk = tmp_path / "psk"
    psk.write_text("correct horse battery\n")
    rc = cli.main(["provision", ep, "--role", role, "--zone", "nord", "--commune", "Thil", "--lat", "49.47",
                   "--lon", "5.90", "--gateway", "coap://192.0.2.10:5683", "--wifi", "CCPHVA-IOT",
                   "--wifi-psk-file", str(psk), "--no-declare", "--out", str(devices)])
    assert rc == 0
    return devices


def test_build_is_reproducible_and_the_image_mounts_in_micropython(tmp_path, capsys):
    outs = []
    for i in range(2):
        out = tmp_path / ("b%d" % i)
        assert cli.main(["build", "--board", "esp32_devkitc", "--role", "lamp", "--out", str(out)]) == 0
        outs.append(out)
    a, b = outs
    for name in ("fs.img", "package.json", "build.json"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    img = (a / "fs.img").read_bytes()
    assert len(img) == 0x200000                      # the board's whole vfs region
    meta = json.loads((a / "build.json").read_text())
    assert meta["fs_sha256"] == hashlib.sha256(img).hexdigest()
    files, cfg = _mount_list(tmp_path, a / "fs.img")
    assert cfg == "-"                                # no --device: no config
    # the role's code compiled for xtensawin, main.py as source, no bin code
    assert "main.py" in files and "app.mpy" in files and "coap/endpoint.mpy" in files
    assert any(p.startswith("lamp/") for p in files)
    assert not any(p.startswith("waste/") or p.startswith("hal/bin_") for p in files)
    assert (a / "files" / "coap" / "codec.mpy").read_bytes()[:2] == b"M\x06"
    for p, size in files.items():                    # bytes in the image = the loose files
        assert (a / "files" / p).stat().st_size == size, p
    board = json.loads((a / "files" / "board.json").read_text())
    assert board["chip"] == "esp32" and board["pins"]["pwm"] == 25


def test_package_json_lists_every_file_for_mip(tmp_path):
    out = tmp_path / "o"
    assert cli.main(["build", "--board", "esp32c3_devkitm", "--role", "bin", "--out", str(out)]) == 0
    pkg = json.loads((out / "package.json").read_text())
    assert pkg["deps"] == [] and pkg["version"] == build.firmware_version()
    dests = [d for d, _ in pkg["urls"]]
    assert dests == sorted(dests) and "main.py" in dests and "waste/cycle.mpy" in dests
    assert not any(d.startswith("lamp/") for d in dests)
    for dest, src in pkg["urls"]:
        assert src == "files/" + dest and (out / src).is_file()
    # compiled for the C3 (bytecode-only .mpy files carry no arch in their header)
    assert json.loads((out / "build.json").read_text())["mpy_arch"] == "rv32imc"


def test_device_image_carries_config_and_private_secrets(tmp_path):
    devices = _provisioned(tmp_path)
    out = tmp_path / "dev"
    assert cli.main(["build", "--board", "esp32_devkitc", "--role", "bin", "--device", "bin-thil-0007",
                     "--devices-dir", str(devices), "--out", str(out)]) == 0
    files, cfg = _mount_list(tmp_path, out / "fs.img")
    assert json.loads(cfg)["ep"] == "bin-thil-0007"
    assert "secrets.json" in files
    # the image holds the Wi-Fi key: owner-only, like secrets.json itself
    assert stat.S_IMODE(os.stat(out / "fs.img").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(out / "files" / "secrets.json").st_mode) == 0o600


@pytest.mark.parametrize("argv,words", [
    (["--role", "lamp", "--device", "bin-thil-0007"], "has role 'bin', not 'lamp'"),
    (["--role", "bin", "--device", "bin-nowhere-1"], "device bin-nowhere-1 is not provisioned"),
])
def test_build_bad_device_is_one_line(tmp_path, capsys, argv, words):
    devices = _provisioned(tmp_path)
    capsys.readouterr()
    rc = cli.main(["build", "--board", "esp32_devkitc", "--devices-dir", str(devices),
                   "--out", str(tmp_path / "o")] + argv)
    err = capsys.readouterr().err
    assert rc == 2 and words in err and err.count("\n") == 1, err
    assert not (tmp_path / "o" / "fs.img").exists()


def _manifest_modules(role):
    """Run boards/manifest.py the way MicroPython's makemanifest does (cwd =
    the manifest's directory, include/module/package as its API) and list the
    firmware files it would freeze. It cannot build MicroPython here; this
    checks that the manifest names real files and misses none."""
    from eclor.tools import mpy as _mpy
    bdir = _mpy.boards_dir()
    frozen, included = [], []

    def module(name, base_path="."):
        p = (bdir / base_path / name).resolve()
        assert p.is_file(), p
        frozen.append(p)

    def package(name, files=None, base_path="."):
        root = (bdir / base_path / name).resolve()
        assert root.is_dir(), root
        if files is None:
            frozen.extend(sorted(root.rglob("*.py")))
        else:
            for f in files:
                assert (root / f).is_file(), root / f
                frozen.append(root / f)

    g = {"include": included.append, "module": module, "package": package}
    old_env, old_cwd = os.environ.get("ECLOR_ROLE"), os.getcwd()
    os.environ["ECLOR_ROLE"] = role
    os.chdir(bdir)
    try:
        exec(compile((bdir / "manifest.py").read_text(), "manifest.py", "exec"), g)
    finally:
        os.chdir(old_cwd)
        if old_env is None:
            os.environ.pop("ECLOR_ROLE")
        else:
            os.environ["ECLOR_ROLE"] = old_env
    assert included == ["$(PORT_DIR)/boards/manifest.py"]
    fw = _mpy.firmware_dir().resolve()
    return {p.relative_to(fw).as_posix() for p in frozen}


@pytest.mark.parametrize("role", ["lamp", "bin"])
def test_manifest_freezes_the_role_and_frozen_build_carries_the_rest(tmp_path, role):
    frozen = _manifest_modules(role)
    wanted = {r.as_posix() for r in build.role_sources(role) if r.suffix == ".py"}
    sim = {p for p in wanted if p.startswith("hal/") and "sim" in p}     # host-only HAL
    assert "main.py" not in frozen and not (frozen & sim)
    assert frozen | {"main.py"} | sim == wanted
    out = tmp_path / "frozen"
    assert cli.main(["build", "--board", "esp32_devkitc", "--role", role, "--frozen", "--out", str(out)]) == 0
    assert sorted(p.relative_to(out / "files").as_posix() for p in (out / "files").rglob("*") if p.is_file()) \
        == ["board.json", "main.py"]
