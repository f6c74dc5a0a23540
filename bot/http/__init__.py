"""The HTTP layer: the app factory (``app``), dependencies over the app's state (``deps``), one
module of thin routes per resource (``routes``) and the Server-Sent Events encoding (``sse``)."""
