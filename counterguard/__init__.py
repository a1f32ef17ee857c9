"""counterguard: an edge fraud-alert appliance for bank branches and carrier outlets.

Everything installs under this one name. The packages stand in layers; a lower one never imports a
higher one (tests/test_layers.py keeps it so):

- ``counterguard.core``: the contracts (wire frames, event schema, MQTT messages and topics, JSON
  text rules, ids, clocks, signed manifests and keyed hashes, features, the verdict rule, staff
  logins); imports nothing else of the project;
- ``counterguard.hardware``: pin maps, wiring diagrams, the bill of materials; stands on core;
- ``counterguard.gateway``: the branch gateway, in rooms; stands on core and hardware;
- ``counterguard.models``: simulation, training and evaluation; stands on core and the gateway's
  scoring, so a model is judged exactly as the gateway scores;
- ``counterguard.centre``: the anti-fraud centre; stands on core and models;
- ``counterguard.provisioning``: certificates, bundles, install; stands on core, hardware and gateway;
- ``counterguard.cli`` and ``counterguard.demo`` at the top wire everything together.
"""

__version__ = "0.1.0"
