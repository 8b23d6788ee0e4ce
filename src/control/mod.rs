//! Control commands: the one parser shared by stdin (`-i`), the FIFO and `monitord ctl`.
