"""The contracts every part of counterguard speaks, and nothing else.

Wire frames (``wire``), the event schema (``events``), MQTT message shapes and topics
(``messages``), JSON text rules (``jsontext``), ids (``ulid``), clocks (``clock``), signed manifests
and keyed hashes (``manifest``), the features shared by training and scoring (``features``), the
three-level verdict and its reason codes (``decision``), staff logins shared by the branch console
and the centre dashboard (``weblogin``) and recognising the CA's private key (``pki``).

May import: the standard library and third-party packages only, never another counterguard package.
"""
