# Boot entry (stays source: MicroPython runs main.py only as .py). See app.py.
import app
app.main()
