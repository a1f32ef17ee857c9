"""counterguard counter node: bridges a teller terminal to the branch gateway (wire protocol v1).

Modules: ``wire`` (frames), ``journal`` (events and answers kept in flash until the gateway
answers), ``dialogue`` (the customer's answers to the caring questions, as a terminal sends them),
``link`` (the gateway side: resends, heartbeats, silence), ``terminal`` (the teller side: one JSON
line each way), ``indicator`` (the counter's LED), ``bridge`` (the main loop) and ``unix``
(stand-ins used only when the firmware runs on the MicroPython unix port).
"""

VERSION = "1.0.0"
