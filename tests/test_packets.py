"""The Socket.IO packet of the worker protocol and the dashboard's stream
(scheduler/remote/packets.py): JSON text only, so nothing scans a packet for bytes."""

from __future__ import annotations

import pytest
from socketio import packet

from dashboard import create_app, services
from scheduler.remote.client import WorkerProcess
from scheduler.remote.options import WorkerOptions
from scheduler.remote.packets import TextPacket

CONTEXTS = {"contexts": [{"order_id": f"o-{n}", "order": {"customer": "ada", "items": [
    {"sku": "A1", "qty": 2, "price": 9.5}] * 3}, "results": {"payment": {"ok": n}}}
    for n in range(20)], "started": [["o-1:payment", 7]]}


@pytest.fixture
def no_scan(monkeypatch):
    def scanned(cls, data):
        raise AssertionError("a packet's data was scanned for bytes")

    monkeypatch.setattr(packet.Packet, "data_is_binary", classmethod(scanned))


def test_a_packet_is_encoded_as_the_library_would_without_scanning_its_data(no_scan):
    for kind in (packet.EVENT, packet.ACK):
        ours = TextPacket(kind, data=["work", CONTEXTS], namespace="/workers", id=12)
        expected = packet.Packet(kind, data=["work", CONTEXTS], namespace="/workers", id=12,
                                 binary=False)  # the library's own, its scan skipped
        assert ours.encode() == expected.encode()
        read = TextPacket(encoded_packet=ours.encode())
        assert (read.packet_type, read.namespace, read.id, read.data) == (
            kind, "/workers", 12, ["work", CONTEXTS])


def test_bytes_in_a_message_are_refused_not_sent_as_an_attachment(no_scan):
    with pytest.raises(TypeError, match="bytes"):
        TextPacket(packet.EVENT, data=["assign", {"blob": b"\x00"}]).encode()


def test_the_server_and_the_worker_process_build_their_packets_so():
    app = create_app()
    assert services(app).socketio.server.packet_class is TextPacket
    worker = WorkerProcess(WorkerOptions(server="http://127.0.0.1:9"), {"payment": print})
    assert worker.sio.packet_class is TextPacket
