"""Virtual fleets for the simulator, the benchmark, the demo and the system tests.

`load`      lean CPython devices speaking raw CoAP over one UDP socket each
            (raw protocol load: thousands of devices in one process).
`firmware`  the real firmware under unix MicroPython: device flash dirs, one
            process per lamp and per bin wake, one simulated world clock,
            simulated inputs (bins filling, a broken lamp, a fire).
`lossproxy` a lossy per-device NAT for fleets that cannot drop packets
            themselves (the firmware), with NAT rebinding.
`gwproc`    start/stop a real gateway subprocess and talk to its HTTP API.
"""
