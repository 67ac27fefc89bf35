//! cairn's read-only FUSE filesystem at `R/store` and the `View` plugins behind it (`raw`,
//! `unixfs`, `app`, `webapp`). Not built yet: see the FUSE issue.
