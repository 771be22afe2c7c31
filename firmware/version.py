# Firmware version, reported in /dev/info and the registration.
VERSION = "0.1.0"
