"""mpremote shortcuts for ECLOR technicians.

Install (mpremote reads ~/.config/mpremote/config.py, or
$XDG_CONFIG_HOME/mpremote/config.py):

    python -m eclor.tools.mpremote_config --install      # copies this file there
    # or by hand:  cp tools/mpremote_config.py ~/.config/mpremote/config.py

Then, on a board or a virtual board (`mpremote connect /dev/ttyUSB0 status`,
or `mpremote status` when one board is plugged in):

    mpremote status              device, firmware, time, heap, boots, role state
    mpremote log                 the last 20 events of the persisted log  (log 50)
    mpremote level 30            lamp: override the level (level 100 to test the lamp)
    mpremote measure             bin: measure now and print the result
    mpremote selftest            role self-test (relay, meter, clock, gateway | ranger, battery...)
    mpremote config              the device config (secrets are never shown)
    mpremote exec "import eclor; eclor.config('report_s', 300)"   change a key (validated, kept)

Each one runs a line of the technician shell `eclor` (firmware/eclor.py) in
the raw REPL. mpremote soft-resets the board first, which stops the running
firmware; `mpremote reset` starts it again. Arguments are Python values:
mpremote runs `exec "x=30"` before the shortcut.
"""

commands = {
    "status": {
        "command": ["exec", "import eclor; eclor.status()"],
        "help": "ECLOR: device, firmware, time, heap, boots and role state",
    },
    "log n=20": {
        "command": ["exec", "import eclor; eclor.log(n)"],
        "help": "ECLOR: recent events from the persisted log",
    },
    "level x": {
        "command": ["exec", "import eclor; print(eclor.level(x))"],
        "help": "ECLOR lamp: override the level (0-100)",
    },
    "measure": {
        "command": ["exec", "import eclor; print(eclor.measure())"],
        "help": "ECLOR bin: measure now",
    },
    "selftest": {
        "command": ["exec", "import eclor; print(eclor.selftest())"],
        "help": "ECLOR: role self-test",
    },
    "config": {
        "command": ["exec", "import eclor; eclor.config()"],
        "help": "ECLOR: show the device config",
    },
}


def _install(argv=None):
    import argparse
    import os
    import shutil

    ap = argparse.ArgumentParser(prog="python -m eclor.tools.mpremote_config",
                                 description="install the ECLOR mpremote shortcuts")
    ap.add_argument("--install", action="store_true", help="copy this file to mpremote's config.py")
    ap.add_argument("--force", action="store_true", help="replace an existing, different config.py")
    a = ap.parse_args(argv)
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    dest = os.path.join(base, "mpremote", "config.py")
    if not a.install:
        print(dest)
        return 0
    src = os.path.abspath(__file__)
    if os.path.exists(dest) and not a.force:
        with open(dest) as f, open(src) as g:
            if f.read() != g.read():
                print("%s exists and differs: merge the `commands` by hand or use --force" % dest)
                return 1
    os.makedirs(os.path.dirname(dest), exist_ok=True)
    shutil.copyfile(src, dest)
    print("installed %s" % dest)
    return 0


if __name__ == "__main__":
    raise SystemExit(_install())
