//! The root package of the cairn workspace. It holds no code of its own: it owns the
//! end-to-end tests in `tests/` (which run the real `cairn` binary) and the examples.
