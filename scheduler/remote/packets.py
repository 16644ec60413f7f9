"""The Socket.IO packet both ends of the worker protocol (and the dashboard's stream) use.

Every message of ours is JSON text: registrations, assignments, results, contexts, events.
python-socketio's default packet scans the data of every packet it builds, recursively, for
bytes to send as binary attachments; with an order's items in each context that scan was
about 5 % of the server's CPU under remote workers. This packet never carries attachments,
so it skips the scan (as the library's own msgpack packet does). Bytes in a message are then
refused when it is encoded (not JSON), instead of being sent as an attachment nobody reads.
"""

from __future__ import annotations

from socketio import packet


class TextPacket(packet.Packet):
    uses_binary_events = False
