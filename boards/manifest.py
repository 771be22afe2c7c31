# Freeze the ECLOR firmware into a MicroPython build for the ESP32 boards.
# Frozen modules run from flash: they cost no RAM to load, which leaves the
# ~100 KB heap of a plain ESP32 to the application.
#
#   cd micropython/ports/esp32          # MicroPython >= 1.26, ESP-IDF set up
#   make submodules
#   ECLOR_ROLE=lamp make BOARD=ESP32_GENERIC \
#        FROZEN_MANIFEST=/path/to/eclor/boards/manifest.py
#   (BOARD=ESP32_GENERIC_C3 / ESP32_GENERIC_S3 for the other boards; see
#    "micropython_board" in boards/*.json; ECLOR_ROLE=bin for a waste bin,
#    unset for both roles)
#
# The result is build-ESP32_GENERIC/firmware.bin, flashed at the board's
# firmware offset by `eclor flash --firmware ...`. main.py is NOT frozen:
# a frozen main.py would win over the filesystem's, and the technician must
# be able to replace it. Build the filesystem image with
# `eclor build --frozen ...`: main.py, board.json and the device's config only.
# (Relative paths are resolved against this file's directory.)
import os

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (_boot, inisetup, asyncio...)

FW = "../firmware"
ROLE = os.environ.get("ECLOR_ROLE", "")
ROLE_PKG = {"lamp": ["lamp"], "bin": ["waste"]}.get(ROLE, ["lamp", "waste"])
ROLE_HAL = {"lamp": ["lamp_esp32.py"], "bin": ["bin_esp32.py"]}.get(ROLE, ["lamp_esp32.py", "bin_esp32.py"])

for name in ("app.py", "eclor.py", "version.py"):
    module(name, base_path=FW)
for pkg in ["coap", "fmt", "dev"] + ROLE_PKG:
    package(pkg, base_path=FW)
# only the ESP32 HAL: the simulated one is for the host
package("hal", files=["__init__.py", "esp32.py"] + ROLE_HAL, base_path=FW)
