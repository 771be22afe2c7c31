"""Virtual fleets for the simulator, the benchmark, the demo and the system tests.

`load`     lean CPython devices speaking raw CoAP over one UDP socket each
           (raw protocol load: thousands of devices in one process).
`host`     the MicroPython script that hosts several real-firmware device
           instances in one unix MicroPython process.
`firmware` the CPython side that prepares device directories and runs hosts.
`gwproc`   start/stop a real gateway subprocess and talk to its HTTP API.
"""
