//! Pins (symlinks under `R/pins`), temp pins, the lock protocol between adders and the
//! collector, and mark-and-sweep garbage collection. Not built yet: see the pins/GC issue.
