"""The counter's protection indicator: steady when the gateway is answering, blinking amber when not.

Drivers receive the light, so the same code drives a plain LED, a NeoPixel or (on the unix port
only) a file that records the colour for tests.
"""

import time

OFF = "off"
GREEN = "green"
AMBER = "amber"

_RGB = {OFF: (0, 0, 0), GREEN: (0, 40, 0), AMBER: (60, 30, 0)}


class Indicator:
    """Shows whether fraud protection is online.

    Wiring: a NeoPixel's data pin on GP16 (``neopixel.NeoPixel(Pin(16), 1)``) or the Pico's own
    LED (``Pin("LED", Pin.OUT)``). Online: steady green (an LED: steady on). Offline: amber blinking
    ``blink_ms`` on, ``blink_ms`` off (an LED: blinking).

    >>> ind = Indicator(neopixel.NeoPixel(Pin(16), 1))
    >>> ind.offline = True; ind.update(time.ticks_ms())     # call update() every loop turn
    """

    def __init__(self, light, blink_ms=500):
        self.light = light
        self.blink_ms = blink_ms
        self.offline = False
        self._shown = None

    def update(self, now):
        if self.offline:
            phase_on = (time.ticks_diff(now, 0) // self.blink_ms) % 2 == 0
            colour = AMBER if phase_on else OFF
        else:
            colour = GREEN
        if colour != self._shown:
            self._shown = colour
            self._show(colour)

    def _show(self, colour):
        light = self.light
        if hasattr(light, "show_colour"):  # unix stand-in
            light.show_colour(colour)
        elif hasattr(light, "write") and hasattr(light, "__setitem__"):  # NeoPixel
            light[0] = _RGB[colour]
            light.write()
        else:  # a plain LED pin
            light.value(0 if colour == OFF else 1)

    def off(self):
        self._shown = OFF
        self._show(OFF)
