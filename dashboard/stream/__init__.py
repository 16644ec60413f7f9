"""The live stream: the Socket.IO namespace "/" a dashboard connects to (`realtime`), the one
task that pushes batched events and snapshots to it (`push`) and the chart's last hour
(`history`)."""
