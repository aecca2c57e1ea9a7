"""The lecture's claims as experiments that measure them."""
