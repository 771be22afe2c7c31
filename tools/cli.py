"""`eclor` — the one command-line entry point.

Each subcommand lives in its own module and is imported only when used, so
`eclor devices` does not pay for esptool and `eclor flash` does not pay for
aiocoap. A subcommand module exposes ``add_arguments(parser)`` and
``run(args) -> int`` (exit status).
"""
import argparse
import importlib
import sys

# name -> (module, one-line help). Modules are relative to the eclor package.
SUBCOMMANDS = {
    "gateway": ("eclor.gateway.daemon", "run the gateway daemon (CoAP + HTTP API)"),
    "devices": ("eclor.gateway.client", "list devices known to the gateway"),
    "readings": ("eclor.gateway.client", "show readings of a device"),
    "send": ("eclor.gateway.client", "send a command to a device: eclor send EP ACTION key=value..."),
    "commands": ("eclor.gateway.client", "list commands and their states"),
    "events": ("eclor.gateway.client", "list recent events"),
    "build": ("eclor.tools.build", "build a LittleFS image and mip package for a board and role"),
    "provision": ("eclor.tools.provision", "create a device config and declare it at the gateway"),
    "flash": ("eclor.tools.flash", "flash MicroPython and the filesystem image with esptool"),
    "vboard": ("eclor.tools.vboard", "run a virtual board on a pseudo-terminal (mpremote connects)"),
    "demo": ("eclor.tools.demo", "gateway plus a fleet of virtual lamps and bins"),
    "sim": ("eclor.tools.sim", "fleet simulator / load generator against a gateway"),
    "selftest": ("eclor.tools.selftest", "run the firmware self-test under unix MicroPython"),
}


def _load(name):
    modname, _ = SUBCOMMANDS[name]
    return importlib.import_module(modname)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="eclor", description="ECLOR smart-territory tools")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen subcommand's module is imported; the others are listed
    # with their help text alone.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for name, (_, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            try:
                mod = _load(name)
            except ImportError as e:
                parser.exit(2, f"eclor {name}: not available ({e})\n")
            adder = getattr(mod, "add_arguments_" + name, None) or getattr(mod, "add_arguments")
            adder(p)
            p.set_defaults(_run=getattr(mod, "run_" + name, None) or getattr(mod, "run"))
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
