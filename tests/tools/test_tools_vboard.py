"""Virtual boards driven by the real `mpremote` (a subprocess on the pty, as a
technician would): exec, run, fs cp/cat/rm, mip install of the built package,
soft reset and reset after which the firmware runs again, simulated inputs
changed while the board runs; and the whole path of a real board: provision,
build, flash through esptool into the ROM emulator, take the vfs region back
out, boot it and see the device register with a real `eclor gateway`."""
import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from eclor.tools import cli
from eclor.tools.fleet import gwproc
from eclor.tools.romemu import RomEmulator, TcpServer

MPREMOTE = str(Path(sys.executable).parent / "mpremote")
ECLOR = [sys.executable, "-m", "eclor.tools.cli"]

# A stand-in firmware whose every boot is visible from the host (this file
# tests the virtual board, not the lamp: the real firmware boots further down)
FAKE_MAIN = """
import time
try:
    n = int(open("boots").read())
except OSError:
    n = 0
open("boots", "w").write(str(n + 1))
print("fake firmware boot", n + 1)
while True:
    time.sleep_ms(20)
"""


class VB:
    def __init__(self, tmp, ep, *args):
        self.state = tmp / "vboards"
        self.ep = ep
        self.proc = subprocess.Popen(ECLOR + ["vboard", "--device", ep, "--state-dir", str(self.state)] + list(args),
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=str(tmp))
        r, _, _ = select.select([self.proc.stdout], [], [], 20)
        line = self.proc.stdout.readline() if r else ""
        assert line.startswith("vboard %s" % ep), line + (self.proc.stderr.read() if self.proc.poll() is not None else "")
        self.pty = line.split(": ", 1)[1].split()[0]
        assert self.pty.startswith("/dev/pts/")

    def mpremote(self, *args, timeout=40, check=True):
        r = subprocess.run([MPREMOTE, "connect", self.pty] + list(args), capture_output=True, text=True, timeout=timeout)
        if check:
            assert r.returncode == 0, "mpremote %s: rc %d\n%s\n%s\n--- console\n%s" % (
                args, r.returncode, r.stdout, r.stderr, self.console()[-1500:])
        return r

    def console(self):
        p = self.state / self.ep / "console.log"
        return p.read_bytes().decode(errors="replace") if p.exists() else ""

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def wait_for(pred, timeout=20, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s" % (what() if callable(what) else what))


def _boots(fs):
    try:
        return int((fs / "boots").read_text())
    except (OSError, ValueError):
        return 0


@pytest.fixture
def fakeboard(tmp_path):
    fs = tmp_path / "fs"
    fs.mkdir()
    (fs / "main.py").write_text(FAKE_MAIN)
    vb = VB(tmp_path, "lamp-vb-0001", "--role", "lamp", "--fs", str(fs))
    vb.fs = fs
    yield vb
    vb.stop()


def test_mpremote_exec_run_fs_and_resets(fakeboard, tmp_path):
    vb, fs = fakeboard, fakeboard.fs
    wait_for(lambda: _boots(fs) == 1, what="firmware at power-on")
    # exec: mpremote interrupts the firmware, soft-resets in the raw REPL
    r = vb.mpremote("exec", "import os; print(sorted(os.listdir('/')), os.getcwd(), 6 * 7)")
    assert r.stdout.strip() == "['_vboard', 'boots', 'main.py'] / 42"
    assert _boots(fs) == 1          # raw-REPL soft reset: main.py does not run (as on the ESP32 port)
    # fs cp there and back, cat, rm
    src = tmp_path / "notes.txt"
    src.write_bytes(b"ligne 1\nlampe \xc3\xa9clairage\n" * 200)
    vb.mpremote("fs", "cp", str(src), ":notes.txt")
    assert (fs / "notes.txt").read_bytes() == src.read_bytes()
    back = tmp_path / "back.txt"
    vb.mpremote("fs", "cp", ":notes.txt", str(back))
    assert back.read_bytes() == src.read_bytes()
    assert vb.mpremote("fs", "cat", ":notes.txt").stdout.startswith("ligne 1\nlampe éclairage\n")
    ls = vb.mpremote("fs", "ls", ":").stdout
    assert "%12d notes.txt" % src.stat().st_size in ls, ls    # sizes, as LittleFS gives them
    vb.mpremote("fs", "rm", ":notes.txt")
    assert "notes.txt" not in vb.mpremote("fs", "ls", ":").stdout and not (fs / "notes.txt").exists()
    # run a local script
    script = tmp_path / "hello.py"
    script.write_text("import sys\nprint('hello from', sys.platform, sum(range(10)))\n")
    assert vb.mpremote("run", str(script)).stdout.strip() == "hello from linux 45"
    # mpremote reset -> machine.reset() -> the board boots and the firmware runs again
    vb.mpremote("reset")
    wait_for(lambda: _boots(fs) == 2, what="firmware after mpremote reset")
    # mpremote soft-reset (raw REPL Ctrl-D) then a command: still answers
    vb.mpremote("soft-reset")
    assert vb.mpremote("exec", "print('still here')").stdout.strip() == "still here"


def test_ctrl_d_at_the_friendly_repl_restarts_the_firmware(fakeboard):
    vb, fs = fakeboard, fakeboard.fs
    wait_for(lambda: _boots(fs) == 1, what="firmware at power-on")
    with serial.Serial(vb.pty, 115200, timeout=0.2) as s:
        pending = [b""]   # what was read past the last token (one read may hold two tokens)

        def read_until(token, timeout=15):
            buf = pending[0]
            end = time.monotonic() + timeout
            while token not in buf and time.monotonic() < end:
                buf += s.read(256)
            assert token in buf, buf
            cut = buf.index(token) + len(token)
            pending[0] = buf[cut:]
            return buf[:cut]
        s.write(b"\r\x03")                       # Ctrl-C stops the firmware -> REPL
        read_until(b"KeyboardInterrupt")
        read_until(b">>> ")
        s.write(b"print('at the', 'repl')\r")
        read_until(b"at the repl")
        s.write(b"\x04")                          # Ctrl-D: soft reboot, main.py runs again
        out = read_until(b"fake firmware boot 2")
        assert b"MPY: soft reboot\r\n" in out
    assert _boots(fs) == 2


def test_mip_install_of_the_built_package(tmp_path):
    out = tmp_path / "pkg"
    assert cli.main(["build", "--board", "esp32_devkitc", "--role", "bin", "--out", str(out)]) == 0
    fs = tmp_path / "fs"
    fs.mkdir()
    (fs / "boot.py").write_text("# empty board\n")
    vb = VB(tmp_path, "bin-vb-0002", "--role", "bin", "--fs", str(fs), "--no-main")
    try:
        r = vb.mpremote("mip", "install", "--target", "/", str(out / "package.json"), timeout=120)
        assert "Done" in r.stdout
        pkg = json.loads((out / "package.json").read_text())
        for dest, src in pkg["urls"]:
            assert (fs / dest).read_bytes() == (out / src).read_bytes(), dest
        # the installed .mpy (xtensawin, the bytes that ship) import on the board
        r = vb.mpremote("exec", "import version, waste.ranger, coap.endpoint; print('v', version.VERSION)")
        assert r.stdout.strip() == "v " + pkg["version"]
    finally:
        vb.stop()


def test_inputs_set_at_start_and_while_running(tmp_path):
    """A fresh board (firmware sources + a local config) whose simulated
    inputs are read by the firmware's own hal.sim."""
    vb = VB(tmp_path, "bin-vb-0003", "--role", "bin", "--no-main", "--set", "distance=0.85", "--set", "temperature=21.5")
    try:
        fs = tmp_path / "vboards" / "bin-vb-0003" / "fs"
        assert json.loads((fs / "config.json").read_text())["role"] == "bin"
        code = "import hal; print(sorted(hal.inputs()['bin'].items()))"
        assert vb.mpremote("exec", code).stdout.strip() == "[('dist', 0.85), ('temp', 21.5)]"
        r = subprocess.run(ECLOR + ["vboard", "--device", "bin-vb-0003", "--state-dir", str(vb.state),
                                    "--set", "tilt=1", "--set", "battery=3.31"],
                           capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
        assert r.returncode == 0, r.stderr
        assert vb.mpremote("exec", code).stdout.strip() == \
            "[('batt', 3.31), ('dist', 0.85), ('temp', 21.5), ('tilt', 1)]"
        # the firmware finds the heap of a bare interpreter of --heap bytes (by default an
        # ESP32's as seen by this host, mpy.device_heap()), the vboard's own boot code (a C
        # driver on a board) notwithstanding
        free = int(vb.mpremote("exec", "import gc; gc.collect(); print(gc.mem_free())").stdout)
        from eclor.tools import mpy
        bare = int(mpy.run(["-c", "import gc; gc.collect(); print(gc.mem_free())"], path_dirs=[],
                           heapsize=mpy.device_heap()).stdout)
        assert bare - 1024 <= free <= bare + 8192, (free, bare)
        bad = subprocess.run(ECLOR + ["vboard", "--device", "bin-vb-0003", "--state-dir", str(vb.state), "--set", "tilt"],
                             capture_output=True, text=True, timeout=30, cwd=str(tmp_path))
        assert bad.returncode == 2 and bad.stderr.strip() == "eclor vboard: --set 'tilt': expected KEY=VALUE"
    finally:
        vb.stop()


def test_bad_image_is_one_line(tmp_path):
    img = tmp_path / "x.img"
    img.write_bytes(b"\xff" * 1000)
    r = subprocess.run(ECLOR + ["vboard", "--device", "bin-x", "--role", "bin", "--image", str(img),
                                "--state-dir", str(tmp_path / "v")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stderr.strip() == "eclor vboard: --image %s: not a LittleFS image of 4096-byte blocks" % img
    # the right size but not LittleFS (erased flash, or a file given by mistake): refused, left untouched
    data = bytes(range(256)) * 16 * 64
    img.write_bytes(data)
    r = subprocess.run(ECLOR + ["vboard", "--device", "bin-x", "--role", "bin", "--image", str(img),
                                "--state-dir", str(tmp_path / "v")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2, r.stdout + r.stderr
    assert r.stderr.strip() == "eclor vboard: --image %s: not a LittleFS filesystem (eclor build makes one)" % img
    assert img.read_bytes() == data


@pytest.mark.slow
def test_flash_emulated_rom_then_boot_the_flash_and_register(tmp_path):
    """Bare board -> registered device, the bytes that would reach a real board."""
    gw = gwproc.Gateway(tmp_path / "gw").start()
    srv = TcpServer(RomEmulator()).start()
    vb = None
    try:
        ep = "bin-villerupt-0009"
        psk = tmp_path / "psk"
        psk.write_text("wifi-key-for-test\n")
        assert cli.main(["provision", ep, "--role", "bin", "--zone", "centre", "--commune", "Villerupt",
                         "--lat", "49.467", "--lon", "5.929", "--gateway", "coap://%s:%d" % gw.coap,
                         "--wifi", "CCPHVA-IOT", "--wifi-psk-file", str(psk), "--api", gw.http_url,
                         "--out", str(tmp_path / "devices")]) == 0
        assert gw.api.get("/api/devices/" + ep)["online"] is False
        assert cli.main(["build", "--board", "esp32_devkitc", "--role", "bin", "--device", ep,
                         "--devices-dir", str(tmp_path / "devices"), "--out", str(tmp_path / "build" / ep)]) == 0
        fw = tmp_path / "ESP32_GENERIC.bin"
        fw.write_bytes(bytes([0xE9, 3, 2, 0x20, 0, 0, 8, 0x40, 0xEE, 0, 0, 0, 0, 0]) + os.urandom(150_000))
        assert cli.main(["flash", "--port", srv.url, "--board", "esp32_devkitc", "--firmware", str(fw),
                         "--build-dir", str(tmp_path / "build"), "--no-stub", "--before", "no-reset",
                         "--after", "no-reset", ep]) == 0
        # what the board's flash now holds, region by region
        assert srv.emu.dump(0x1000, len(fw.read_bytes())) == fw.read_bytes()
        flashed = tmp_path / "flash-vfs.img"
        flashed.write_bytes(srv.emu.dump(0x200000, 0x200000))
        assert flashed.read_bytes() == (tmp_path / "build" / ep / "fs.img").read_bytes()
        vb = VB(tmp_path, ep, "--image", str(flashed), "--devices-dir", str(tmp_path / "devices"))
        dev = wait_for(lambda: (lambda d: d if d.get("online") else None)(gw.api.get("/api/devices/" + ep)),
                       timeout=30, what=lambda: "registration at the gateway\n" + vb.console()[-3000:])
        assert dev["queue_mode"] is True and dev["type"] == "bin"
        # the board wrote to its flash image (boot counter), as a real one would
        assert "boot role=bin" in vb.console()
        # and a technician can open it with mpremote (wakes it from deep sleep)
        r = vb.mpremote("exec", "import json; print(json.load(open('config.json'))['ep'])", timeout=60)
        assert r.stdout.strip() == ep
    finally:
        if vb:
            vb.stop()
        srv.close()
        gw.stop()


def test_mpremote_shortcuts_from_the_shipped_config(tmp_path):
    """tools/mpremote_config.py installed where mpremote looks for it, used
    against a fresh virtual bin running the real firmware modules."""
    xdg = tmp_path / "xdg"
    r = subprocess.run([sys.executable, "-m", "eclor.tools.mpremote_config", "--install"],
                       env=dict(os.environ, XDG_CONFIG_HOME=str(xdg)), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0 and (xdg / "mpremote" / "config.py").is_file()
    vb = VB(tmp_path, "bin-vb-0005", "--role", "bin", "--no-main", "--set", "distance=0.5")
    env = dict(os.environ, XDG_CONFIG_HOME=str(xdg))

    def short(*args):
        r = subprocess.run([MPREMOTE, "connect", vb.pty] + list(args), capture_output=True, text=True,
                           timeout=40, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        return r.stdout

    try:
        assert (vb.state / "bin-vb-0005" / "fs" / "waste" / "cycle.mpy").is_file()   # .mpy, as shipped
        out = short("status")
        assert out.splitlines()[0].split()[:3] == ["ep", "bin-vb-0005", "(bin)"]
        m = short("measure")
        assert "'distance': 0.5" in m
        assert "'ranger': (True" in short("selftest")
        assert "ep = bin-vb-0005" in short("config")
        assert short("level", "30").strip().endswith("None")          # x=30 reached eclor.level
        short("log", "5")
    finally:
        vb.stop()


SLEEPY_MAIN = """
import time, sys, json
try:
    n = int(open("boots").read())
except OSError:
    n = 0
open("boots", "w").write(str(n + 1))
print("sleepy boot", n + 1)
if n == 0:
    sys.exit(7)                      # a crash: the board reboots
if n in (1, 2):
    # deep sleep the way hal/sim.py does it: wake time saved, exit status 3
    with open("/_vboard/rtc.json", "w") as f:
        json.dump({"utc": time.time() + (1.0 if n == 1 else 3600)}, f)
    sys.exit(3)
while True:
    time.sleep_ms(20)
"""


def test_crash_reboot_deep_sleep_and_wake_by_console(tmp_path):
    fs = tmp_path / "fs"
    fs.mkdir()
    (fs / "main.py").write_text(SLEEPY_MAIN)
    vb = VB(tmp_path, "bin-vb-0006", "--role", "bin", "--fs", str(fs))
    try:
        wait_for(lambda: _boots(fs) == 2, what="reboot after the crash")
        assert "[vboard: micropython exited with status 7; rebooting]" in vb.console()
        wait_for(lambda: _boots(fs) == 3, timeout=10, what="wake after a 1 s deep sleep")
        time.sleep(1.0)
        assert _boots(fs) == 3                      # now asleep for an hour
        # mpremote on a sleeping board: like pressing EN, it boots and answers
        r = vb.mpremote("exec", "print(open('boots').read())")
        assert r.stdout.strip() == "4"
        assert "[vboard: woken from deep sleep by the console]" in vb.console()
    finally:
        vb.stop()
