//! The daemon: poller, task conversion (Task → executor Job), reporter, shutdown and drain.
