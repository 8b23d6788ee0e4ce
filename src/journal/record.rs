//! Records: what a frame's payload means.
