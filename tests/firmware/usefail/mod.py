# A module whose import loads a service (fmt.senml) and then fails, as an
# import that runs out of heap partway does (test_lamp_role.py, lamp.use()).
from fmt import senml  # noqa: F401

raise MemoryError("test: no heap for the rest of this module")
