"""File formats: the NetCDF trajectory (:mod:`.trajectory`) and run checkpoints (:mod:`.checkpoint`)."""
