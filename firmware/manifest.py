# micropython-lib style manifest: freeze the counter node package into a firmware image, e.g.
#   make -C ports/rp2 BOARD=RPI_PICO FROZEN_MANIFEST=/path/to/firmware/board_manifest.py
# where board_manifest.py does include("$(PORT_DIR)/boards/manifest.py") and include() of this file.
# main.py and board.py stay plain files on the board's filesystem (board.py holds the counter number).
metadata(description="counterguard counter node: teller terminal to gateway bridge, wire protocol v1",
         version="1.0.0")
# The protection indicator's NeoPixel driver comes from micropython-lib (the rp2 port's own manifest
# already freezes it; a manifest includes each package once).
require("neopixel")
package("counterguard_node")
