# The lamp tests of test_lamp_night.py and test_lamp_faults.py run from the
# .mpy files at 100 KB; this runs a selection from *source* (what a
# technician copying .py files gets). The compiler's peak while it compiles
# the lazily imported modules mid-run needs more heap on the 64-bit host.
MODES = ("src",)
HEAPSIZE = 262144
TIMEOUT = 120
import test_lamp_night as night
import test_lamp_faults as faults


def test_src_winter_night():
    night.test_winter_solstice_part_night()


def test_src_reboot_mid_night():
    night.test_reboot_mid_night_resumes_level_and_keeps_energy()


def test_src_lamp_failure_events():
    faults.test_lamp_failure_raised_after_debounce_and_cleared()


def test_src_invalid_calendar():
    faults.test_invalid_calendar_rejected_old_kept()
