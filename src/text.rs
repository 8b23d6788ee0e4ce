//! Text or data: the content check `file(1)` would make.
