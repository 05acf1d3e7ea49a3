"""Time loops that know nothing about cells: the shared loop pieces, the linear scan, the fused
gated path, the selective scan, the state-space-dual chunks, and the row-blocked dense product."""
