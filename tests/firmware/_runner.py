# Runs one firmware test function inside unix-port MicroPython.
# argv: module function. Prints a marker on success; a traceback and exit 1 on failure.
import sys
import gc


def _main():
    mod = __import__(sys.argv[1])
    fn = getattr(mod, sys.argv[2])
    gc.collect()
    res = fn()
    if res is not None and hasattr(res, "send"):  # async def test: a coroutine
        import asyncio
        asyncio.run(res)
    print("ECLOR-TEST-PASS")


try:
    _main()
except BaseException as e:  # report everything, including MemoryError
    sys.print_exception(e)
    sys.exit(1)
