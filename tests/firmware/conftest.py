"""Firmware tests: plain functions in tests/firmware/test_*.py run inside the
real unix-port MicroPython, one pytest item per function and per mode.

Modes: `src` imports the firmware from source; `mpy` imports the .mpy files
that mpy-cross builds for the ESP32 (-march=xtensawin) — the bytes that ship;
`rom` (only where a module lists it in MODES) imports those .mpy files in
place from a ROMFS image mounted at /rom (tools/romfs.py), as on a
ROMFS-enabled board: their bytecode is not on the heap.
Each test runs in a fresh process, in a fresh temporary directory (its flash),
with an ESP32-sized heap; a module can set `HEAPSIZE = n` to change it,
`SRC_HEAPSIZE = n` for the [src] mode alone (default: HEAPSIZE + 32 KB, since
compiling from source needs the compiler's RAM, which a board running the
shipped .mpy never pays), and
`TIMEOUT = s` for long simulations.
"""
import ast
import os
import subprocess
from pathlib import Path

import pytest

from eclor.tools import mpy

HERE = Path(__file__).resolve().parent
MODES = ("src", "mpy")
# [src] items get this much more heap by default: compiling from source needs
# the compiler's RAM and interns the checkout's (arbitrarily long) file paths,
# which a board running the shipped .mpy never pays. The [mpy] items run at
# the plain ESP32 figure and are the memory check.
SRC_COMPILER_HEAP = 32 * 1024


_SETTINGS = ("HEAPSIZE", "SRC_HEAPSIZE", "TIMEOUT", "MODES")


def _module_consts(tree):
    """The harness settings of a test module: plain constant expressions
    (`128 * 1024` included), evaluated without builtins."""
    consts = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in _SETTINGS:
            expr = ast.Expression(node.value)
            consts[node.targets[0].id] = eval(compile(expr, "<setting>", "eval"), {"__builtins__": {}})
    return consts


def pytest_pycollect_makemodule(module_path, parent):
    path = Path(module_path)
    if path.parent == HERE and path.name.startswith("test_"):
        return MicroPythonModule.from_parent(parent, path=path)
    return None


class MicroPythonModule(pytest.File):
    def collect(self):
        tree = ast.parse(self.path.read_text(), str(self.path))
        consts = _module_consts(tree)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test_"):
                heap = consts.get("HEAPSIZE", mpy.ESP32_HEAP)
                src_heap = consts.get("SRC_HEAPSIZE", heap + SRC_COMPILER_HEAP)
                for mode in consts.get("MODES", MODES):
                    yield MicroPythonItem.from_parent(
                        self, name="%s[%s]" % (node.name, mode), func=node.name, mode=mode,
                        heapsize=src_heap if mode == "src" else heap,
                        timeout=consts.get("TIMEOUT", 60),
                    )


class MicroPythonFailure(Exception):
    pass


class MicroPythonItem(pytest.Item):
    def __init__(self, *, func, mode, heapsize, timeout, **kw):
        super().__init__(**kw)
        self.func, self.mode, self.heapsize, self.timeout = func, mode, heapsize, timeout
        self.add_marker(getattr(pytest.mark, "mp_" + mode))

    def runtest(self):
        if self.mode == "mpy":
            fw = getattr(self.session, "_mpy_tree_dir", None) or self._request_mpy_tree()
        elif self.mode == "rom":
            fw = None
            rom = getattr(self.session, "_romfs_image", None) or self._request_romfs()
        else:
            fw = mpy.firmware_dir()
        flash = self.session.config._tmp_path_factory.mktemp("flash")
        try:
            proc = mpy.run(
                [str(HERE / "_runner.py"), self.path.stem, self.func],
                path_dirs=[fw, HERE] if fw else [HERE], heapsize=self.heapsize, cwd=flash, timeout=self.timeout,
                env={"ECLOR_TEST_MODE": self.mode}, romfs=rom if fw is None else None,
            )
        except subprocess.TimeoutExpired as e:
            raise MicroPythonFailure("timed out after %ss\n%s" % (self.timeout, e.stdout or "")) from None
        if proc.returncode != 0 or "ECLOR-TEST-PASS" not in proc.stdout:
            raise MicroPythonFailure("exit %d\n--- stdout\n%s--- stderr\n%s" % (proc.returncode, proc.stdout, proc.stderr))

    def _request_mpy_tree(self):
        dst = self.session.config._tmp_path_factory.mktemp("firmware-mpy")
        mpy.compile_tree(dst)
        self.session._mpy_tree_dir = dst
        return dst

    def _request_romfs(self):
        from eclor.tools import romfs
        tree = getattr(self.session, "_mpy_tree_dir", None) or self._request_mpy_tree()
        img = self.session.config._tmp_path_factory.mktemp("romfs") / "firmware.romfs"
        img.write_bytes(romfs.tree_image(tree))
        self.session._romfs_image = img
        return img

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, MicroPythonFailure):
            return "MicroPython (%s, heap %d): %s" % (self.mode, self.heapsize, excinfo.value)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, 0, "%s::%s" % (self.path.name, self.name)
