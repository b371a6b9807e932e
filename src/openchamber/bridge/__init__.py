"""The loopback HTTP + WebSocket server views follow (see docs/BRIDGE.md)."""

from openchamber.bridge.service import Bridge, BridgeError

__all__ = ["Bridge", "BridgeError"]
