"""The scoring room: the fraud model on LiteRT (``model``) and the stop-payment list
(``watchlist``). Features and the verdict rule live in core, shared with training.
May import: core, the store room, the gateway's ``config`` and ``questions``."""
